package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
)

// lineWaiter collects output and says when a string has arrived.
type lineWaiter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	wake chan struct{}
}

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

// await waits, bounded, until the output holds s.
func (w *lineWaiter) await(t *testing.T, s string) {
	t.Helper()
	if !w.wait(s) {
		t.Fatalf("no %q in the output: %q", s, w.String())
	}
}

// wait reports whether the output came to hold s within a minute.
func (w *lineWaiter) wait(s string) bool {
	deadline := time.After(time.Minute)
	for !strings.Contains(w.String(), s) {
		select {
		case <-w.wake:
		case <-deadline:
			return false
		}
	}
	return true
}

func (w *lineWaiter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestExecOverWebSocket(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)

	// Interactive: each line comes back before the next is written, so
	// stdin and output stream together; closing stdin ends cat with 0.
	stdinR, stdinW := io.Pipe()
	out := &lineWaiter{wake: make(chan struct{}, 1)}
	done := make(chan struct{})
	var res api.ExecResult
	var err error
	go func() {
		defer close(done)
		res, err = c.ExecSocket(ctx, sb.ID, api.ExecRequest{Cmd: []string{"cat"}}, stdinR, out, io.Discard)
	}()
	for _, line := range []string{"first\n", "second\n"} {
		if _, err := io.WriteString(stdinW, line); err != nil {
			t.Fatal(err)
		}
		out.await(t, line)
	}
	stdinW.Close()
	<-done
	if err != nil || res.ExitCode != 0 || out.String() != "first\nsecond\n" {
		t.Fatalf("cat: %+v %v %q", res, err, out.String())
	}

	// 6 MiB of stdin, more than the agent's window, arrive whole; binary
	// output arrives byte for byte.
	data := make([]byte, 6<<20)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	var stdout, stderr bytes.Buffer
	res, err = c.ExecSocket(ctx, sb.ID, api.ExecRequest{Shell: "sha256sum | cut -d' ' -f1; printf '\\000\\377' >&2"},
		bytes.NewReader(data), &stdout, &stderr)
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(stdout.String()) != hex.EncodeToString(sum[:]) || stderr.String() != "\x00\xff" {
		t.Fatalf("sha256sum: %+v %v %q %q", res, err, stdout.String(), stderr.String())
	}
	res, err = c.ExecSocket(ctx, sb.ID, api.ExecRequest{Shell: "exit 3", Env: map[string]string{"A": "1"}, Cwd: "/tmp"}, strings.NewReader(""), io.Discard, io.Discard)
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("exit 3: %+v %v", res, err)
	}

	// Cancelling kills the command: nothing of it is left.
	kctx, cancel := context.WithCancel(ctx)
	started := &lineWaiter{wake: make(chan struct{}, 1)}
	go func() {
		started.wait("up")
		cancel()
	}()
	never, _ := io.Pipe()
	_, err = c.ExecSocket(kctx, sb.ID, api.ExecRequest{Shell: "echo up; exec sleep 1000"}, never, started, io.Discard)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled exec: %v", err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		r, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "ps -o comm | grep -c '^sleep' || true"})
		if err == nil && strings.TrimSpace(r.Stdout) == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the killed command's sleep is still there: %+v %v", r, err)
		}
	}

	// Bad input is refused before the upgrade, with the JSON envelope.
	for _, tc := range []struct {
		query, key string
		upgrade    bool
		status     int
	}{
		{"cmd=true", f.user, false, 400},
		{"", f.user, true, 400},
		{"cmd=true&shell=true", f.user, true, 400},
		{"cmd=true&timeout_ms=-1", f.user, true, 400},
		{"cmd=true&env=NOVALUE", f.user, true, 400},
		{"cmd=true&cwd=relative", f.user, true, 400},
		{"cmd=true", f.admin, true, 404},
		{"cmd=true", "", true, 401},
	} {
		hdr := []string{}
		if tc.upgrade {
			hdr = append(hdr, "Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		status, body := f.call(t, http.MethodGet, "/v1/sandboxes/"+sb.ID+"/exec?"+tc.query, tc.key, "", hdr...)
		if status != tc.status {
			t.Errorf("%s (upgrade %v): %d %s, want %d", tc.query, tc.upgrade, status, body, tc.status)
			continue
		}
		envelope(t, body)
	}
}
