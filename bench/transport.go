package main

import (
	"context"
	"fmt"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime/docker"
)

// benchTransport measures exec `true` through a sandbox on the network
// transport of the agent channel (TCP and mutual TLS, on a bothy of its own
// started with --agent-transport tcp) beside the same through a sandbox on
// the unix socket (the main bothy's, c), alternating one of each.
func benchTransport(ctx context.Context, c *api.Client, bin, agentBin, image string, eng *docker.Docker, n int) ([]row, error) {
	sd, err := startBothy(bin, agentBin, image, "--pool-min-idle", "0", "--sandbox-pool", "0", "--agent-transport", "tcp")
	if err != nil {
		return nil, err
	}
	defer sd.stopAndClean(ctx, eng)
	tc := api.NewClient(sd.url, benchKey)
	overTCP, err := tc.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
	if err != nil {
		return nil, err
	}
	defer tc.DeleteSandbox(context.WithoutCancel(ctx), overTCP.ID)
	overUnix, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
	if err != nil {
		return nil, err
	}
	defer c.DeleteSandbox(context.WithoutCancel(ctx), overUnix.ID)
	execTrue := api.ExecRequest{Cmd: []string{"true"}}
	once := func(cl *api.Client, id string) (time.Duration, error) {
		t0 := time.Now()
		res, err := cl.Exec(ctx, id, execTrue)
		if err != nil || res.ExitCode != 0 {
			return 0, fmt.Errorf("exec: %v %+v", err, res)
		}
		return time.Since(t0), nil
	}
	var ours, base []time.Duration
	for i := range n + 100 { // the first 100 warm up connections and caches
		d, err := once(tc, overTCP.ID)
		if err != nil {
			return nil, err
		}
		b, err := once(c, overUnix.ID)
		if err != nil {
			return nil, err
		}
		if i >= 100 {
			ours, base = append(ours, d), append(base, b)
		}
	}
	return []row{{name: "exec `true` on the network transport, TCP + mutual TLS (vs the unix socket, both through REST)", ours: ours, base: base, target: "p50 <= 1.3 x baseline"}}, nil
}
