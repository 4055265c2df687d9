package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

// bothy is a bothy the benchmark started: on a free loopback port, with
// a scratch data directory and the benchmark's admin key.
type bothy struct {
	url, data string
	cmd       *exec.Cmd
	logs      bytes.Buffer
}

// startBothy starts bin with image as its default and flags besides, and
// waits until it is ready.
func startBothy(bin, agentBin, image string, flags ...string) (*bothy, error) {
	data, err := os.MkdirTemp("", "bothy-bench-")
	if err != nil {
		return nil, err
	}
	s := &bothy{data: data}
	if err := os.Chmod(data, 0o711); err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s.cmd = exec.Command(bin, append([]string{"--listen", addr, "--data", data, "--agent", agentBin, "--default-image", image,
		"--log-level", "warn"}, flags...)...)
	s.cmd.Env = append(os.Environ(), "BOTHY_ADMIN_KEY="+benchKey)
	s.cmd.Stderr = &s.logs
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(data)
		return nil, err
	}
	s.url = "http://" + addr
	if err := waitReady(s.url, 10*time.Minute); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w: %s", err, s.logs.String())
	}
	return s, nil
}

// stop shuts it down as an operator does (SIGTERM) and removes its data
// directory, with the tmpfs bothyd keeps its run directory on (left mounted
// for sandboxes of an earlier run). Its sandboxes, pooled ones included,
// keep running.
func (s *bothy) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
	_ = syscall.Unmount(filepath.Join(s.data, "run"), syscall.MNT_DETACH)
	os.RemoveAll(s.data)
}

// instance is its instance ID, the label of everything it made in the engine.
func (s *bothy) instance() (string, error) {
	b, err := os.ReadFile(filepath.Join(s.data, "instance"))
	return strings.TrimSpace(string(b)), err
}

// stopAndClean stops it and removes every container it made (sandboxes
// outlive a stopped bothyd, which would adopt them at its next start; this
// one has none).
func (s *bothy) stopAndClean(ctx context.Context, eng *docker.Docker) {
	ctx = context.WithoutCancel(ctx)
	instance, err := s.instance()
	s.stop()
	if err != nil {
		return
	}
	cs, _ := eng.List(ctx, map[string]string{runtime.LabelInstance: instance})
	for _, ct := range cs {
		_ = eng.Remove(ctx, ct.ID)
	}
}

// plainWithChanges starts a plain container of image (no bothy, no
// network) and runs write in it: the baseline of a checkpoint.
func plainWithChanges(ctx context.Context, eng *docker.Docker, image, write string) (string, error) {
	plain, err := eng.Create(ctx, runtime.Spec{Image: image, Entrypoint: []string{"sleep", "infinity"}, Network: "none",
		Labels: map[string]string{"bothy.bench": "baseline"}})
	if err != nil {
		return "", err
	}
	if err := eng.Start(ctx, plain); err != nil {
		_ = eng.Remove(context.WithoutCancel(ctx), plain)
		return "", err
	}
	if code, err := eng.DockerExec(ctx, plain, []string{"sh", "-c", write}); err != nil || code != 0 {
		_ = eng.Remove(context.WithoutCancel(ctx), plain)
		return "", fmt.Errorf("docker exec write: %v %d", err, code)
	}
	return plain, nil
}

// checkpointOfChanges makes a sandbox of image on c, runs write in it, and
// takes its checkpoint: the sandbox, the snapshot, and how long the
// checkpoint took.
func checkpointOfChanges(ctx context.Context, c *api.Client, image, write string) (api.Sandbox, api.Snapshot, time.Duration, error) {
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
	if err != nil {
		return sb, api.Snapshot{}, 0, err
	}
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: write}); err != nil || res.ExitCode != 0 {
		return sb, api.Snapshot{}, 0, fmt.Errorf("write changes: %v %+v", err, res)
	}
	t0 := time.Now()
	sn, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "bench"})
	return sb, sn, time.Since(t0), err
}
