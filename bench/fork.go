package main

import (
	"context"
	"fmt"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime/docker"
)

// benchFork measures a fork of a sandbox holding 100 MB of changes into 4,
// beside cold creates of its image made in the same run (the fork's time per
// sandbox against a cold create -> first exec), and beside the same work
// done on the engine directly: docker commit of a container holding the
// same 100 MB, then 4 containers of the image created and started on the
// same network, two at a time.
func benchFork(ctx context.Context, c *api.Client, eng *docker.Docker, image string, coldN int) ([]row, error) {
	execTrue := api.ExecRequest{Cmd: []string{"true"}}
	var cold []time.Duration
	for range coldN {
		t0 := time.Now()
		s, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, s.ID, execTrue); err != nil {
			return nil, err
		}
		cold = append(cold, time.Since(t0))
		if err := c.DeleteSandbox(ctx, s.ID); err != nil {
			return nil, err
		}
	}
	src, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
	if err != nil {
		return nil, err
	}
	defer c.DeleteSandbox(context.WithoutCancel(ctx), src.ID)
	if res, err := c.Exec(ctx, src.ID, api.ExecRequest{Shell: "mkdir -p /data && head -c 100000000 /dev/urandom > /data/blob"}); err != nil || res.ExitCode != 0 {
		return nil, fmt.Errorf("write 100 MB: %v %+v", err, res)
	}
	const n = 4
	var total, perSandbox []time.Duration
	for range 3 {
		t0 := time.Now()
		res, err := c.Fork(ctx, src.ID, api.ForkRequest{Count: n})
		if err != nil {
			return nil, err
		}
		for _, sb := range res.Sandboxes {
			if _, err := c.Exec(ctx, sb.ID, execTrue); err != nil {
				return nil, err
			}
		}
		d := time.Since(t0)
		total = append(total, d)
		perSandbox = append(perSandbox, d/n)
		for _, sb := range res.Sandboxes {
			if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
				return nil, err
			}
		}
		if err := c.DeleteSnapshot(ctx, res.Snapshot); err != nil {
			return nil, err
		}
	}
	engine, err := dockerFork(ctx, eng, image, n)
	if err != nil {
		return nil, err
	}
	return []row{
		{name: fmt.Sprintf("fork of 100 MB of changes into %d -> first exec in each, total (vs docker commit + %d x create+start, two at a time, same network)", n, n), ours: total, base: engine, target: "-"},
		{name: fmt.Sprintf("fork into %d, per sandbox (vs cold create -> first exec)", n), ours: perSandbox, base: cold, target: "p50 <= 1.2 x baseline"},
	}, nil
}

// dockerFork times, three times, what a fork into n asks of the engine: a
// commit of a container holding 100 MB of changes, then n containers of the
// image created and started two at a time on bothy's network.
func dockerFork(ctx context.Context, eng *docker.Docker, image string, n int) ([]time.Duration, error) {
	src, err := dockerStart(ctx, eng, image, "bothy")
	if src != "" {
		defer eng.Remove(context.WithoutCancel(ctx), src)
	}
	if err != nil {
		return nil, err
	}
	if code, err := eng.DockerExec(ctx, src, []string{"sh", "-c", "mkdir -p /data && head -c 100000000 /dev/urandom > /data/blob"}); err != nil || code != 0 {
		return nil, fmt.Errorf("write 100 MB: %v, exit %d", err, code)
	}
	const ref = "bothy-bench/fork:latest"
	var out []time.Duration
	for range 3 {
		t0 := time.Now()
		if _, err := eng.Commit(ctx, src, ref, map[string]string{"bothy.bench": "baseline"}); err != nil {
			return nil, err
		}
		made, _, err := concurrently(n, 2, func() (string, error) { return dockerStart(ctx, eng, ref, "bothy") })
		d := time.Since(t0)
		for _, id := range made {
			_ = eng.Remove(context.WithoutCancel(ctx), id)
		}
		_ = eng.ImageRemove(context.WithoutCancel(ctx), ref)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
