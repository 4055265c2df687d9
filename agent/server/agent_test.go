package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/agent/wire"
)

// pair starts an Endpoint and an agent dialling it in this process.
func pair(t *testing.T) *agent.Conn {
	t.Helper()
	c, _ := pairServer(t)
	return c
}

// pairServer is pair, with the agent's server.
func pairServer(t *testing.T) (*agent.Conn, *Server) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sock := filepath.Join(t.TempDir(), "a.sock")
	ep, err := agent.Listen(sock, "secret", log)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); Dial(ctx, sock, "secret", srv, log) }()
	t.Cleanup(func() {
		cancel()
		ep.Close()
		wg.Wait()
		srv.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	conn, err := ep.Conn(wctx)
	if err != nil {
		t.Fatal(err)
	}
	return conn, srv
}

func run(t *testing.T, c *agent.Conn, req wire.ExecRequest, stdin io.Reader) (wire.ExecResult, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Exec(ctx, req, stdin, &out, &errb)
	if err != nil {
		t.Fatalf("exec %v: %v", req.Argv, err)
	}
	return res, out.String(), errb.String()
}

func TestExec(t *testing.T) {
	c := pair(t)
	tests := []struct {
		name     string
		req      wire.ExecRequest
		stdin    io.Reader
		code     int
		stdout   string
		stderr   string
		check    func(t *testing.T, r wire.ExecResult)
		stderrIn string
	}{
		{name: "stdout", req: wire.ExecRequest{Argv: []string{"echo", "hi"}}, stdout: "hi\n"},
		{name: "exit code", req: wire.ExecRequest{Argv: []string{"sh", "-c", "echo oops >&2; exit 3"}}, code: 3, stderr: "oops\n"},
		{name: "env and cwd", req: wire.ExecRequest{Argv: []string{"sh", "-c", "echo $FOO; pwd"}, Env: map[string]string{"FOO": "bar"}, Cwd: "/tmp"}, stdout: "bar\n/tmp\n"},
		{name: "buffered stdin", req: wire.ExecRequest{Argv: []string{"cat"}, Stdin: []byte("abc")}, stdout: "abc"},
		{name: "streamed stdin", req: wire.ExecRequest{Argv: []string{"wc", "-c"}}, stdin: strings.NewReader(strings.Repeat("x", 100000)), stdout: "100000\n"},
		{name: "not found", req: wire.ExecRequest{Argv: []string{"no-such-command-xyz"}}, code: 127, check: func(t *testing.T, r wire.ExecResult) {
			if !strings.Contains(r.StartError, "not found") {
				t.Errorf("start error %q", r.StartError)
			}
		}},
		{name: "bad cwd", req: wire.ExecRequest{Argv: []string{"true"}, Cwd: "/no/such/dir"}, code: 126},
		// A relative cwd starts at the user's home (root's: /root).
		{name: "relative cwd", req: wire.ExecRequest{Argv: []string{"pwd"}, Cwd: ".."}, stdout: "/\n"},
		{name: "timeout", req: wire.ExecRequest{Argv: []string{"sleep", "10"}, TimeoutMs: 100}, code: 137, check: func(t *testing.T, r wire.ExecResult) {
			if !r.TimedOut || r.Signal != "SIGKILL" || r.DurationMs > 5000 {
				t.Errorf("result %+v", r)
			}
		}},
		{name: "output cap", req: wire.ExecRequest{Argv: []string{"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' a"}, MaxOutput: 10}, stdout: "aaaaaaaaaa", check: func(t *testing.T, r wire.ExecResult) {
			if !r.StdoutTruncated {
				t.Error("not marked truncated")
			}
		}},
		{name: "background child keeps pipe", req: wire.ExecRequest{Argv: []string{"sh", "-c", "sleep 5 & echo started"}}, stdout: "started\n", check: func(t *testing.T, r wire.ExecResult) {
			if r.DurationMs > 1000 {
				t.Errorf("waited for the background child: %v ms", r.DurationMs)
			}
		}},
		{name: "cpu and memory", req: wire.ExecRequest{Argv: []string{"sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"}}, check: func(t *testing.T, r wire.ExecResult) {
			if r.CPUMs <= 0 || r.PeakMemoryKB <= 0 {
				t.Errorf("no usage: %+v", r)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, out, errOut := run(t, c, tc.req, tc.stdin)
			if res.ExitCode != tc.code {
				t.Errorf("exit code %d, want %d (%+v)", res.ExitCode, tc.code, res)
			}
			if tc.stdout != "" && out != tc.stdout {
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
			if tc.stderr != "" && errOut != tc.stderr {
				t.Errorf("stderr %q, want %q", errOut, tc.stderr)
			}
			if tc.check != nil {
				tc.check(t, res)
			}
		})
	}
}

func TestExecCancelKillsProcess(t *testing.T) {
	c := pair(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A sleep of its own length, to be found among this host's processes.
	arg := fmt.Sprintf("%d.%06d", 3000+os.Getpid()%1000, time.Now().Nanosecond()/1000)
	mine := func() []int {
		var pids []int
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if string(b) == "sleep\x00"+arg+"\x00" && alive(pid) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, wire.ExecRequest{Argv: []string{"sleep", arg}}, nil, io.Discard, io.Discard)
		done <- err
	}()
	for deadline := time.Now().Add(30 * time.Second); len(mine()) == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the command never started")
		}
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("want an error after cancel")
	}
	for deadline := time.Now().Add(30 * time.Second); len(mine()) > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled command still runs: %v", mine())
		}
	}
}

func TestHandshakeRefusesBadToken(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sock := filepath.Join(t.TempDir(), "a.sock")
	ep, err := agent.Listen(sock, "right", log)
	if err != nil {
		t.Fatal(err)
	}
	defer ep.Close()
	served, err := dialOnce(context.Background(), sock, "wrong", nil)
	if served || err == nil || !strings.Contains(err.Error(), "bad token") {
		t.Fatalf("served=%v err=%v", served, err)
	}
	if ep.Connected() {
		t.Fatal("endpoint accepted a bad token")
	}
}

func TestFrameBounds(t *testing.T) {
	var buf bytes.Buffer
	if err := wire.WriteFrame(&buf, wire.FrameStdout, make([]byte, wire.MaxFrame+1)); err == nil {
		t.Fatal("wrote an oversized frame")
	}
	buf.Reset()
	buf.Write([]byte{'O', 0xff, 0xff, 0xff, 0xff})
	if _, _, err := wire.ReadFrame(&buf); err == nil {
		t.Fatal("read an oversized frame header")
	}
}

// noLeaks fails the test if goroutines started during it outlive its cleanup.
// Call it first, so that its check runs after every other cleanup. The
// runtime's own signal loop, started by the first signal.Notify, and the
// process's reaper, started by the first child, are not leaks: they run
// until the process ends.
func noLeaks(t *testing.T) {
	t.Helper()
	before := goroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			now := goroutines()
			if len(now) <= len(before) {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n%s", len(now)-len(before), strings.Join(now, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func goroutines() []string {
	buf := make([]byte, 1<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if !strings.Contains(g, "os/signal.loop") && !strings.Contains(g, "(*reaper).loop") {
			out = append(out, g)
		}
	}
	return out
}

// TestExecOutputOutlivesASlowReader: output a process wrote before it
// exited reaches a caller that reads slowly, all of it, however long the
// caller takes: the wait for more output after the exit counts only the
// time the pipes are quiet, not the time spent sending what they held.
func TestExecOutputOutlivesASlowReader(t *testing.T) {
	c := pair(t)
	marker := filepath.Join(t.TempDir(), "exited")
	// Both fit in a pipe, so the process writes them and exits while the
	// caller reads nothing.
	script := "head -c 60000 /dev/zero >&2; head -c 60000 /dev/zero; touch " + marker
	var out bytes.Buffer
	errOut := &slowWriter{until: marker}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := c.Exec(ctx, wire.ExecRequest{Argv: []string{"sh", "-c", script}}, nil, &out, errOut)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec: %+v %v", res, err)
	}
	if errOut.n != 60000 || out.Len() != 60000 {
		t.Fatalf("a slow caller got %d bytes of stderr and %d of stdout, want 60000 of each", errOut.n, out.Len())
	}
}

// slowWriter takes nothing until the file until exists, and then waits
// five times pipeGrace more: not to synchronise anything (the test's
// assertion holds for any wait), but so that a wait for output that
// counted the caller's slowness would run out before it returns.
type slowWriter struct {
	until string
	n     int
	slept bool
}

func (w *slowWriter) Write(p []byte) (int, error) {
	if !w.slept {
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if _, err := os.Stat(w.until); err == nil {
				break
			}
		}
		time.Sleep(5 * pipeGrace)
		w.slept = true
	}
	w.n += len(p)
	return len(p), nil
}
