package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bothy/bothy/api"
)

// benchApp is a Python app whose every request runs one SQL query.
const benchApp = `
def fetch(request, env):
    return str(env.storage.sql.exec("SELECT count(*) AS n FROM sqlite_master").one()["n"])
`

// dynamicResults are the figures of dynamic code and apps.
type dynamicResults struct {
	rows                 []row
	perSec, dockerPerSec float64
	ephemeralCold        int
}

// benchDynamic measures runs and app invokes beside `docker run --rm` of the
// same snippet.
func benchDynamic(ctx context.Context, c *api.Client, runN, dockerN int) (dynamicResults, error) {
	var out dynamicResults
	if err := waitPool(ctx, c, "python", 2); err != nil {
		return out, err
	}
	print1 := api.RunRequest{Runtime: "python", Code: "print(1)"}
	for range 50 {
		if _, err := c.Run(ctx, print1); err != nil {
			return out, err
		}
	}
	ours := make([]time.Duration, 0, runN)
	for range runN {
		t0 := time.Now()
		res, err := c.Run(ctx, print1)
		if err != nil || res.Stdout != "1\n" {
			return out, fmt.Errorf("run: %v %+v", err, res)
		}
		ours = append(ours, time.Since(t0))
	}
	base := make([]time.Duration, 0, dockerN)
	for range dockerN {
		d, err := dockerRun("bothy/runner-python:latest", "python3", "-c", "print(1)")
		if err != nil {
			return out, err
		}
		base = append(base, d)
	}
	out.rows = append(out.rows, row{name: "python print(1), process mode (REST vs docker run --rm)", ours: ours, base: base,
		target: "p50 <= 3 ms, p99 <= 15 ms"})

	// Sustained runs for one key: as many in flight as there are cores,
	// plus one, for five seconds.
	var done atomic.Int64
	var failed atomic.Value
	stop := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for range numCPU() + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if _, err := c.Run(ctx, print1); err != nil {
					failed.Store(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return out, fmt.Errorf("sustained runs: %w", err)
	}
	out.perSec = float64(done.Load()) / 5
	out.dockerPerSec = float64(time.Second) / float64(pct(base, 50))

	// An app invoke that runs one SQL query.
	if _, err := c.DeployApp(ctx, "bench", api.DeployAppRequest{Runtime: "python", Code: benchApp}); err != nil {
		return out, err
	}
	defer c.DeleteApp(context.WithoutCancel(ctx), "bench")
	invoke := func() error {
		resp, err := c.Invoke(ctx, "bench", http.MethodGet, "/", nil, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("invoke: HTTP %d: %s", resp.StatusCode, b)
		}
		return nil
	}
	for range 50 {
		if err := invoke(); err != nil {
			return out, err
		}
	}
	inv := make([]time.Duration, 0, runN)
	for range runN {
		t0 := time.Now()
		if err := invoke(); err != nil {
			return out, err
		}
		inv = append(inv, time.Since(t0))
	}
	invBase := make([]time.Duration, 0, dockerN)
	for range dockerN {
		d, err := dockerRun("bothy/runner-python:latest", "python3", "-c",
			`import sqlite3; print(sqlite3.connect("/tmp/app.db").execute("SELECT count(*) FROM sqlite_master").fetchone()[0])`)
		if err != nil {
			return out, err
		}
		invBase = append(invBase, d)
	}
	out.rows = append(out.rows, row{name: "app invoke with one SQL query (REST vs docker run --rm of the query)", ours: inv, base: invBase,
		target: "p50 <= 2 ms"})

	// Ephemeral runs while the pool has warm runners: each waits for one,
	// and for the refill and removal the last run caused to be over, so that
	// the figure is the run's and not the engine's.
	eph := make([]time.Duration, 0, 20)
	for len(eph) < 20 {
		if err := waitPool(ctx, c, "python", 1); err != nil {
			return out, err
		}
		time.Sleep(300 * time.Millisecond)
		t0 := time.Now()
		res, err := c.Run(ctx, api.RunRequest{Runtime: "python", Code: "print(1)", Mode: "ephemeral"})
		if err != nil {
			return out, err
		}
		if !res.Warm {
			out.ephemeralCold++
			continue
		}
		eph = append(eph, time.Since(t0))
	}
	out.rows = append(out.rows, row{name: "python print(1), ephemeral mode, pool not empty (vs docker run --rm)", ours: eph, base: base,
		target: "p50 <= 5 ms"})
	return out, nil
}

// waitPool waits until the default pool of runtime has n idle runners.
func waitPool(ctx context.Context, c *api.Client, runtime string, n int) error {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		pl, err := c.Pools(ctx)
		if err != nil {
			return err
		}
		for _, p := range pl.Pools {
			if p.Runtime == runtime && p.MemoryMB == 256 && p.Idle >= n && p.Starting == 0 {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("the %s pool did not reach %d idle runners", runtime, n)
}

// dockerRun times `docker run --rm` of argv in image, with a runner's flags.
func dockerRun(image string, argv ...string) (time.Duration, error) {
	args := append([]string{"run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp:size=64m",
		"--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "65534:65534",
		"--memory", "256m", "--pids-limit", "128", image}, argv...)
	t0 := time.Now()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("docker run: %v: %s", err, out)
	}
	return time.Since(t0), nil
}
