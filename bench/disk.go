package main

import (
	"context"
	"fmt"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

// writeCmd writes 100 MiB and waits for it to reach the disk.
const writeCmd = "dd if=/dev/zero of=/root/w bs=1M count=100 conv=fsync 2>/dev/null && rm /root/w"

// benchDisk measures what a per-sandbox disk limit costs: the engine's
// create+start and a 100 MiB write in containers with a size and without;
// and bothy's create -> first exec and the same write in sandboxes (which
// always have a size on an engine that enforces one) against a container
// without one.
func benchDisk(ctx context.Context, c *api.Client, eng *docker.Docker, image string, n int) ([]row, error) {
	var sbCreate, sbWrite, sizedCreate, plainCreate, sizedWrite, plainWrite []time.Duration
	for range n {
		t0 := time.Now()
		s, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image, DiskMB: 1024}, "")
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, s.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil {
			return nil, err
		}
		sbCreate = append(sbCreate, time.Since(t0))
		t0 = time.Now()
		res, err := c.Exec(ctx, s.ID, api.ExecRequest{Shell: writeCmd})
		if err != nil || res.ExitCode != 0 {
			return nil, fmt.Errorf("write in a sandbox: %v %+v", err, res)
		}
		sbWrite = append(sbWrite, time.Since(t0))
		if err := c.DeleteSandbox(ctx, s.ID); err != nil {
			return nil, err
		}
		for _, side := range []struct {
			size          int64
			create, write *[]time.Duration
		}{{1 << 30, &sizedCreate, &sizedWrite}, {0, &plainCreate, &plainWrite}} {
			t0 := time.Now()
			id, err := eng.Create(ctx, runtime.Spec{
				Image: image, Entrypoint: []string{"sleep", "infinity"}, Network: "bothy", DiskBytes: side.size,
				Labels: map[string]string{"bothy.bench": "baseline"},
			})
			if err != nil {
				return nil, err
			}
			if err := eng.Start(ctx, id); err != nil {
				_ = eng.Remove(ctx, id)
				return nil, err
			}
			*side.create = append(*side.create, time.Since(t0))
			t0 = time.Now()
			code, err := eng.DockerExec(ctx, id, []string{"sh", "-c", writeCmd})
			*side.write = append(*side.write, time.Since(t0))
			if rerr := eng.Remove(ctx, id); err == nil {
				err = rerr
			}
			if err != nil || code != 0 {
				return nil, fmt.Errorf("write in a container: %v %d", err, code)
			}
		}
	}
	return []row{
		{name: "create -> first exec with disk_mb (vs docker create+start without a size, same network)", ours: sbCreate, base: plainCreate, target: "-"},
		{name: "docker create+start with a size (vs without)", ours: sizedCreate, base: plainCreate, target: "cost of the limit"},
		{name: "write 100 MiB + fsync in a sandbox with disk_mb, REST (vs docker exec, no size)", ours: sbWrite, base: plainWrite, target: "-"},
		{name: "write 100 MiB + fsync with a size, docker exec (vs without)", ours: sizedWrite, base: plainWrite, target: "cost of the limit"},
	}, nil
}
