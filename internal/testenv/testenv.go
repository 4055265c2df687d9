// Package testenv gives Docker-backed tests their engine: under CI a missing
// engine fails the test instead of skipping it.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bothy/bothy/runtime/docker"
)

// Docker connects to the engine. Without one it fails the test under CI (or when
// BOTHY_REQUIRE_DOCKER is set) and skips it otherwise; -short skips it.
func Docker(t testing.TB) *docker.Docker {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no Docker-backed tests")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := docker.New(ctx, Logger(t))
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BOTHY_REQUIRE_DOCKER") != "" {
			t.Fatalf("docker engine required: %v", err)
		}
		t.Skipf("no docker engine: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	// As bothy does at start: the shared counters its containers take
	// from are raised past what the host's memory could hold.
	if _, err := docker.RaiseHostLimits(); err != nil {
		t.Fatalf("raise the host's shared limits: %v", err)
	}
	return d
}

// Logger is a logger for tests: quiet unless BOTHY_TEST_LOG is set.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("BOTHY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

var (
	agentOnce sync.Once
	agentPath string
	agentErr  error
)

// AgentBinary builds cmd/bothy-agent (static) once per test process and
// returns its path.
func AgentBinary(t testing.TB) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bothy-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentPath = filepath.Join(dir, "bothy-agent")
		cmd := exec.Command("go", "build", "-o", agentPath, "github.com/bothy/bothy/cmd/bothy-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = fmt.Errorf("build agent: %v: %s", err, out)
		}
	})
	if agentErr != nil {
		t.Fatal(agentErr)
	}
	return agentPath
}

// DataDir makes a data directory that a remapped container root can traverse
// (t.TempDir's parents cannot be).
func DataDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "bothy-"+suite+"-")
	if err != nil {
		t.Fatal(err)
	}
	// A bothy started on dir labels what it makes with the directory's
	// name, which carries the suite's tag.
	if err := os.WriteFile(filepath.Join(dir, "instance"), []byte(filepath.Base(dir)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// bothy mounts a tmpfs on its run directory.
		_ = unix.Unmount(filepath.Join(dir, "run"), unix.MNT_DETACH)
		os.RemoveAll(dir)
	})
	return dir
}

// Body is a request body of n bytes that no one holds: it is made as it is
// read ('[' bytes, never valid JSON), and read, when not nil, counts them.
func Body(n int64, read *atomic.Int64) io.Reader { return &body{left: n, read: read} }

type body struct {
	left int64
	read *atomic.Int64
}

func (b *body) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), b.left))
	for i := range p[:n] {
		p[i] = '['
	}
	b.left -= int64(n)
	if b.read != nil {
		b.read.Add(int64(n))
	}
	return n, nil
}
