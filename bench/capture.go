package main

import (
	"context"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime/docker"
)

// benchCapture times checkpoints that the sandbox's agent captures (a
// bothy of its own, started with --checkpoint agent) of 100 MB of fresh
// changes, beside docker commit of a plain container with the same
// changes, alternating; and the same followed by a sandbox from the
// snapshot, to its first exec (which waits for the engine's load of the
// layer), beside the commit followed by a create+start of its image. A
// first, untimed checkpoint reads the image's paths once, as any first
// checkpoint of a sandbox of that image does.
func benchCapture(ctx context.Context, bin, agentBin, image string, eng *docker.Docker, n int) ([]row, error) {
	sd, err := startBothy(bin, agentBin, image, "--pool-min-idle", "0", "--sandbox-pool", "0", "--checkpoint", "agent")
	if err != nil {
		return nil, err
	}
	defer sd.stopAndClean(ctx, eng)
	c := api.NewClient(sd.url, benchKey)
	const write = "head -c 100000000 /dev/urandom > /root/changes"
	var ours, base, oursThen, baseThen []time.Duration
	for i := range n + 1 {
		sb, sn, took, err := checkpointOfChanges(ctx, c, image, write)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		from, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: sn.ID}, "")
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, from.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil {
			return nil, err
		}
		if i > 0 {
			ours = append(ours, took)
			oursThen = append(oursThen, took+time.Since(t0))
		}
		_ = c.DeleteSandbox(ctx, from.ID)
		_ = c.DeleteSandbox(ctx, sb.ID)
		_ = c.DeleteSnapshot(ctx, sn.ID)

		plain, err := plainWithChanges(ctx, eng, image, write)
		if err != nil {
			return nil, err
		}
		t0 = time.Now()
		ref := "bothy-bench/commit:latest"
		if _, err := eng.Commit(ctx, plain, ref, nil); err != nil {
			return nil, err
		}
		committed := time.Since(t0)
		started, err := dockerCreateStart(ctx, eng, ref, "bridge")
		if err != nil {
			return nil, err
		}
		if i > 0 {
			base = append(base, committed)
			baseThen = append(baseThen, committed+started)
		}
		_ = eng.Remove(ctx, plain)
		_ = eng.ImageRemove(ctx, ref)
	}
	return []row{
		{name: "checkpoint captured by the agent, 100 MB changed (vs docker commit)", ours: ours, base: base, target: "<= 1.0 x baseline"},
		{name: "the same, then a sandbox from the snapshot -> first exec (vs docker commit, then create+start of its image)", ours: oursThen, base: baseThen, target: "-"},
	}, nil
}
