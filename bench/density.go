package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

// densityResults is what many idle sandboxes on one host cost.
type densityResults struct {
	n                       int
	stoppedShort            string
	hostPerSandboxMiB       float64
	agentPSSMiB, shimPSSMiB float64
	bothyRSSMiB             float64
	bothyRSSBeforeMiB       float64
	createRate, first40Rate float64
	dockerRate              float64
	rows                    []row
	leftAfterDelete         int
	deleteFailed            int   // deletes that failed the first time
	deleteErr               error // the first of them
}

// benchDensity creates n idle sandboxes of image with 64 MiB each (stopping
// early when the host's available memory falls under a floor), then reports
// the host memory each costs, the agent's and the engine shim's share,
// bothy's RSS, and the API's latency at that density; then deletes them
// all and counts what is left in the engine.
//
// The engine's own create rate comes first, on a host without them: 40
// containers of the image with the same limits on the same network, 4 at a
// time. They stay up until the end, so that bothy's first 40 creates,
// timed on their own, are made among as many containers as the engine's.
func benchDensity(ctx context.Context, c *api.Client, eng *docker.Docker, image string, n int, bothyPID int, instance string) (densityResults, error) {
	res := densityResults{}
	const rateN = 40
	spec := runtime.Spec{
		Image: image, Entrypoint: []string{"sleep", "infinity"}, Network: "bothy",
		MemoryBytes: 64 << 20, Labels: map[string]string{"bothy.bench": "baseline"},
	}
	if info, err := eng.Info(ctx); err == nil && info.DiskLimits != "" {
		spec.DiskBytes = 10 << 30 // a sandbox's default disk_mb
	}
	made, d, err := concurrently(rateN, 4, func() (string, error) { return dockerSpecStart(ctx, eng, spec) })
	defer func() {
		for _, id := range made {
			_ = eng.Remove(context.WithoutCancel(ctx), id)
		}
	}()
	if err != nil {
		return res, err
	}
	res.dockerRate = rateN / d.Seconds()
	// Sandboxes made before (the full bench keeps one up throughout) are
	// not counted among those left.
	label := map[string]string{runtime.LabelInstance: instance, runtime.LabelKind: runtime.KindSandbox}
	existing, err := eng.List(ctx, label)
	if err != nil {
		return res, err
	}
	before := memAvailableMiB()
	res.bothyRSSBeforeMiB = rssMiB(bothyPID)
	var mu sync.Mutex
	var ids []string
	var firstErr error
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if avail := memAvailableMiB(); avail < 2048 {
			res.stoppedShort = fmt.Sprintf("stopped at %d: %.0f MiB available", i, avail)
			break
		}
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image, MemoryMB: 64}, "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			ids = append(ids, sb.ID)
			if len(ids) == rateN {
				res.first40Rate = rateN / time.Since(t0).Seconds()
			}
		}()
	}
	wg.Wait()
	created := time.Since(t0)
	res.n = len(ids)
	if firstErr != nil && res.stoppedShort == "" {
		res.stoppedShort = fmt.Sprintf("stopped at %d: %v", len(ids), firstErr)
	}
	res.createRate = float64(len(ids)) / created.Seconds()
	// deleteAll deletes them 4 at a time, and once more those whose
	// delete failed; it keeps the first failure to report.
	deleteAll := func() {
		pending := ids
		for try := range 2 {
			var failed []string
			var wg sync.WaitGroup
			sem := make(chan struct{}, 4)
			for _, id := range pending {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if err := c.DeleteSandbox(context.WithoutCancel(ctx), id); err != nil {
						mu.Lock()
						defer mu.Unlock()
						failed = append(failed, id)
						if try == 0 {
							res.deleteFailed++
							if res.deleteErr == nil {
								res.deleteErr = err
							}
						}
					}
				}()
			}
			wg.Wait()
			pending = failed
		}
	}
	if len(ids) == 0 {
		return res, firstErr
	}
	// Let the new sandboxes settle idle before reading the host.
	time.Sleep(10 * time.Second)
	after := memAvailableMiB()
	res.hostPerSandboxMiB = (before - after) / float64(len(ids))
	res.agentPSSMiB = meanPSSMiB("/.bothy/bin/bothy-agent")
	res.shimPSSMiB = meanPSSMiB("containerd-shim-runc")
	res.bothyRSSMiB = rssMiB(bothyPID)

	// The API at that density.
	var gets, execs []time.Duration
	for range 300 {
		id := ids[rand.IntN(len(ids))]
		t := time.Now()
		if _, err := c.GetSandbox(ctx, id); err != nil {
			deleteAll()
			return res, err
		}
		gets = append(gets, time.Since(t))
	}
	for range 200 {
		id := ids[rand.IntN(len(ids))]
		t := time.Now()
		if r, err := c.Exec(ctx, id, api.ExecRequest{Cmd: []string{"true"}}); err != nil || r.ExitCode != 0 {
			deleteAll()
			return res, fmt.Errorf("exec at density: %v %+v", err, r)
		}
		execs = append(execs, time.Since(t))
	}
	// Beside the engine's own at the same density: inspect, and docker exec.
	var inspects, dexecs []time.Duration
	for range 50 {
		id := ids[rand.IntN(len(ids))]
		t := time.Now()
		if _, err := eng.Inspect(ctx, "bothy-"+id); err != nil {
			deleteAll()
			return res, err
		}
		inspects = append(inspects, time.Since(t))
	}
	for range 20 {
		id := ids[rand.IntN(len(ids))]
		t := time.Now()
		if code, err := eng.DockerExec(ctx, "bothy-"+id, []string{"true"}); err != nil || code != 0 {
			deleteAll()
			return res, fmt.Errorf("docker exec at density: %v %d", err, code)
		}
		dexecs = append(dexecs, time.Since(t))
	}
	res.rows = []row{
		{name: fmt.Sprintf("GET /v1/sandboxes/{id} among %d idle sandboxes (vs docker inspect)", len(ids)), ours: gets, base: inspects, target: "p99 <= 20 ms"},
		{name: fmt.Sprintf("exec `true` among %d idle sandboxes (vs docker exec)", len(ids)), ours: execs, base: dexecs, target: "p99 <= 30 ms"},
	}
	deleteAll()
	cs, err := eng.List(ctx, label)
	if err != nil {
		return res, err
	}
	res.leftAfterDelete = len(cs) - len(existing)
	return res, nil
}

func printDensity(d densityResults) {
	fmt.Printf("\nDensity: %d idle sandboxes (64 MiB limit each)", d.n)
	if d.stoppedShort != "" {
		fmt.Printf(", %s", d.stoppedShort)
	}
	fmt.Printf("\n- host memory per idle sandbox: %.1f MiB (MemAvailable before and after)\n", d.hostPerSandboxMiB)
	fmt.Printf("- of which the agent's PSS: %.1f MiB, the engine shim's: %.1f MiB (means; the rest is the kernel's)\n", d.agentPSSMiB, d.shimPSSMiB)
	fmt.Printf("- bothy's RSS: %.0f MiB (%.0f MiB before the creates: %.2f MiB per sandbox)\n",
		d.bothyRSSMiB, d.bothyRSSBeforeMiB, (d.bothyRSSMiB-d.bothyRSSBeforeMiB)/float64(max(d.n, 1)))
	fmt.Printf("- create rate, 4 at a time: first 40 %.1f/s, all %d %.1f/s; docker create+start of 40 of the same image with the same limits on the same network, 4 at a time, first: %.1f/s (first-40 ratio %.2f; target >= 5/s, bounded by container starts)\n",
		d.first40Rate, d.n, d.createRate, d.dockerRate, d.first40Rate/d.dockerRate)
	fmt.Printf("- containers left after deleting them all: %d", d.leftAfterDelete)
	if d.deleteFailed > 0 {
		fmt.Printf(" (%d deletes failed the first time, and were retried once; the first: %v)", d.deleteFailed, d.deleteErr)
	}
	fmt.Println()
}

func memAvailableMiB() float64 { return procFieldMiB("/proc/meminfo", "MemAvailable:") }

func pssMiB(pid int) float64 {
	return procFieldMiB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
}

func rssMiB(pid int) float64 { return procFieldMiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:") }

// procFieldMiB reads the first line of a /proc file that starts with field
// ("VmRSS:", a size in kB) as MiB; 0 when there is none.
func procFieldMiB(path, field string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// meanPSSMiB is the mean proportional set size of the processes whose
// command line holds name: what each costs, pages shared with the others (the
// same binary's) divided among them, which RSS would count in full for each.
func meanPSSMiB(name string) float64 {
	out, err := exec.Command("pgrep", "-f", name).Output()
	if err != nil {
		return 0
	}
	var sum float64
	var n int
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		if r := pssMiB(pid); r > 0 {
			sum += r
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
