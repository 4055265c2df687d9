package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime/docker"
)

// benchRegistry measures, on a bothy of its own started with --registry
// (Debian's docker-registry on loopback), a checkpoint of 100 MB of fresh
// changes (commit and push) beside docker commit + docker push of the same
// changes, and a restore from the pushed snapshot whose image the engine no
// longer has (pull, create, start, first exec) beside docker pull + create
// + start of the pushed commit.
func benchRegistry(ctx context.Context, bin, agentBin, image, checkpoint string, eng *docker.Docker, n int) ([]row, error) {
	dir, err := os.MkdirTemp("", "bothy-bench-registry-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	reg, stop, err := testenv.StartRegistry(dir)
	if err != nil {
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	defer stop()
	sd, err := startBothy(bin, agentBin, image, "--pool-min-idle", "0", "--sandbox-pool", "0", "--registry", reg, "--checkpoint", checkpoint)
	if err != nil {
		return nil, err
	}
	defer sd.stopAndClean(ctx, eng)
	c := api.NewClient(sd.url, benchKey)
	const write = "head -c 100000000 /dev/urandom > /root/changes"
	var snapOurs, snapBase, restOurs, restBase []time.Duration
	for i := range n {
		sb, sn, took, err := checkpointOfChanges(ctx, c, image, write)
		if err != nil {
			return nil, err
		}
		snapOurs = append(snapOurs, took)
		if err := eng.ImageRemove(ctx, "bothy/snapshot:"+sn.ID); err != nil {
			return nil, err
		}
		t0 := time.Now()
		clone, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: sn.ID}, "")
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, clone.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil {
			return nil, err
		}
		restOurs = append(restOurs, time.Since(t0))
		_ = c.DeleteSandbox(ctx, clone.ID)
		_ = c.DeleteSandbox(ctx, sb.ID)
		_ = c.DeleteSnapshot(ctx, sn.ID)

		plain, err := plainWithChanges(ctx, eng, image, write)
		if err != nil {
			return nil, err
		}
		ref := fmt.Sprintf("%s/bothy-bench/commit:%d", reg, i)
		t0 = time.Now()
		if _, err := eng.Commit(ctx, plain, ref, nil); err != nil {
			return nil, err
		}
		if err := eng.ImagePush(ctx, ref, nil); err != nil {
			return nil, err
		}
		snapBase = append(snapBase, time.Since(t0))
		_ = eng.Remove(ctx, plain)
		if err := eng.ImageRemove(ctx, ref); err != nil {
			return nil, err
		}
		t0 = time.Now()
		if err := eng.ImagePull(ctx, ref, nil); err != nil {
			return nil, err
		}
		if _, err := dockerCreateStart(ctx, eng, ref, "bridge"); err != nil {
			return nil, err
		}
		restBase = append(restBase, time.Since(t0))
		_ = eng.ImageRemove(ctx, ref)
	}
	how := "checkpoint"
	if checkpoint == "agent" {
		how = "checkpoint captured by the agent"
	}
	return []row{
		{name: how + " of 100 MB of changes with --registry, pushed to a loopback registry (vs docker commit + docker push)", ours: snapOurs, base: snapBase, target: "-"},
		{name: "restore from a pushed snapshot the engine lacks (" + checkpoint + ") -> first exec (vs docker pull + create+start)", ours: restOurs, base: restBase, target: "p50 <= 1.1 x baseline"},
	}, nil
}
