package main

import (
	"context"
	"fmt"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime/docker"
)

// diffResults are the snapshot diff figures: first is the one diff asked
// right after the second checkpoint, while its layers may still be being
// read.
type diffResults struct {
	first time.Duration
	rows  []row
}

// benchDiff diffs two checkpoints of a sandbox that wrote 100 files of 1 MB
// and then changed 10 of them, and the first checkpoint against the live
// sandbox; the baseline is the engine's own list of the container's
// changes (docker diff).
func benchDiff(ctx context.Context, c *api.Client, eng *docker.Docker, image string, n int) (diffResults, error) {
	var res diffResults
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
	if err != nil {
		return res, err
	}
	defer c.DeleteSandbox(context.WithoutCancel(ctx), sb.ID)
	exec := func(sh string) error {
		r, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: sh})
		if err == nil && r.ExitCode != 0 {
			err = fmt.Errorf("%q exited %d: %s", sh, r.ExitCode, r.Stderr)
		}
		return err
	}
	if err := exec(`mkdir -p /data && for i in $(seq 1 100); do head -c 1000000 /dev/urandom > /data/f$i; done`); err != nil {
		return res, err
	}
	s1, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "bench-diff-1"})
	if err != nil {
		return res, err
	}
	defer c.DeleteSnapshot(context.WithoutCancel(ctx), s1.ID)
	if err := exec(`for i in $(seq 1 10); do echo changed >> /data/f$i; done`); err != nil {
		return res, err
	}
	s2, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "bench-diff-2"})
	if err != nil {
		return res, err
	}
	defer c.DeleteSnapshot(context.WithoutCancel(ctx), s2.ID)
	diff := func(to string) (time.Duration, error) {
		t0 := time.Now()
		d, err := c.DiffSnapshot(ctx, s1.ID, to)
		if err == nil && len(d.Changes) != 10 {
			err = fmt.Errorf("diff %s -> %s: %d changes, want 10", s1.ID, to, len(d.Changes))
		}
		return time.Since(t0), err
	}
	if res.first, err = diff(s2.ID); err != nil {
		return res, err
	}
	var snaps, live, base []time.Duration
	for range n {
		d, err := diff(s2.ID)
		if err != nil {
			return res, err
		}
		snaps = append(snaps, d)
	}
	for range max(3, n/4) {
		d, err := diff(sb.ID)
		if err != nil {
			return res, err
		}
		live = append(live, d)
	}
	for range n {
		t0 := time.Now()
		if _, err := eng.DockerDiff(ctx, "bothy-"+sb.ID); err != nil {
			return res, err
		}
		base = append(base, time.Since(t0))
	}
	res.rows = []row{
		{name: "snapshot diff, 10 of 100 files changed in a 100 MB checkpoint (vs docker diff)", ours: snaps, base: base, target: "p50 <= 300 ms"},
		{name: "diff of a checkpoint against the live sandbox, same changes (vs docker diff)", ours: live, base: base, target: "-"},
	}
	return res, nil
}
