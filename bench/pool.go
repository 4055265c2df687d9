package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime/docker"
)

// poolSize is the warm pool of the benchmark's second bothy.
const poolSize = 4

// benchPool measures create -> first exec served by the warm sandbox pool, on
// a bothy of its own that keeps poolSize sandboxes of image warm, beside a
// docker create+start on the same isolated network, measured in turn. Each
// create waits for a full pool first: the figure is a claim's, and the
// refill that follows it runs before the next create (so that it is not
// measured into it, as it would not be in a burst the size of the pool).
func benchPool(ctx context.Context, bin, agentBin, image string, eng *docker.Docker, n int) ([]row, error) {
	sd, err := startBothy(bin, agentBin, image, "--pool-min-idle", "0", "--sandbox-pool", fmt.Sprintf("default:%d", poolSize))
	if err != nil {
		return nil, err
	}
	defer sd.stopAndClean(ctx, eng)
	c := api.NewClient(sd.url, benchKey)
	full := func() error {
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			list, err := c.Pools(ctx)
			if err != nil {
				return err
			}
			if len(list.SandboxPools) == 1 && list.SandboxPools[0].Ready == poolSize {
				return nil
			}
		}
		return fmt.Errorf("the sandbox pool did not fill: %s", sd.logs.String())
	}
	execTrue := api.ExecRequest{Cmd: []string{"true"}}
	var ours, base []time.Duration
	var created []string
	defer func() {
		for _, id := range created {
			_ = c.DeleteSandbox(context.WithoutCancel(ctx), id)
		}
	}()
	for range n {
		if err := full(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, sb.ID, execTrue); err != nil {
			return nil, err
		}
		ours = append(ours, time.Since(t0))
		created = append(created, sb.ID)
		if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
			return nil, err
		}
		created = created[:len(created)-1]
		// The baseline: a container started on the network sandboxes join.
		if len(base) < 10 {
			d, err := dockerCreateStart(ctx, eng, image, "bothy")
			if err != nil {
				return nil, err
			}
			base = append(base, d)
		}
	}
	list, err := c.Pools(ctx)
	if err != nil {
		return nil, err
	}
	if p := list.SandboxPools[0]; p.Hits != uint64(n) || p.Misses != 0 {
		return nil, fmt.Errorf("the pool served %d of %d creates (%d misses)", p.Hits, n, p.Misses)
	}

	// A burst the size of the pool: poolSize creates at once, beside as
	// many docker create+start at once.
	var burst, burstBase []time.Duration
	for range 5 {
		if err := full(); err != nil {
			return nil, err
		}
		ids, d, err := concurrently(poolSize, poolSize, func() (string, error) {
			sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
			return sb.ID, err
		})
		created = append(created, ids...)
		if err != nil {
			return nil, err
		}
		burst = append(burst, d)
		for _, id := range ids {
			if err := c.DeleteSandbox(ctx, id); err != nil {
				return nil, err
			}
		}
		created = created[:0]
		cids, d, err := concurrently(poolSize, poolSize, func() (string, error) { return dockerStart(ctx, eng, image, "bothy") })
		for _, id := range cids {
			_ = eng.Remove(context.WithoutCancel(ctx), id)
		}
		if err != nil {
			return nil, err
		}
		burstBase = append(burstBase, d)
	}
	return []row{
		{name: fmt.Sprintf("create -> first exec, warm pool of %d (vs docker create+start, same isolated network)", poolSize),
			ours: ours, base: base, target: "p50 <= 30 ms and <= 0.1 x, p99 <= 80 ms"},
		{name: fmt.Sprintf("burst of %d creates at once from a full pool, all answered (vs %d docker create+start at once)", poolSize, poolSize),
			ours: burst, base: burstBase, target: fmt.Sprintf(">= 20/s: <= %d ms", poolSize*50)},
	}, nil
}

// concurrently runs fn n times, limit at a time, and answers what they made
// and how long until the last was done.
func concurrently(n, limit int, fn func() (string, error)) ([]string, time.Duration, error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var ids []string
	var firstErr error
	slots := make(chan struct{}, limit)
	t0 := time.Now()
	for range n {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			id, err := fn()
			mu.Lock()
			defer mu.Unlock()
			if id != "" {
				ids = append(ids, id)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return ids, time.Since(t0), firstErr
}
