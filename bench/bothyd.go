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
