package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/agent/wire"
)

// readUntil reads a stream's output until it contains want.
func readUntil(t *testing.T, p *agent.PtyStream, want string) string {
	t.Helper()
	var got bytes.Buffer
	deadline := time.Now().Add(10 * time.Second)
	_ = p.SetReadDeadline(deadline)
	defer p.SetReadDeadline(time.Time{})
	for !strings.Contains(got.String(), want) {
		b, exit, err := p.Next()
		if err != nil || exit != nil {
			t.Fatalf("waiting for %q: exit=%v err=%v, got %q", want, exit, err, got.String())
		}
		got.Write(b)
	}
	return got.String()
}

func openShell(t *testing.T, c *agent.Conn, cols, rows uint16) *agent.PtyStream {
	t.Helper()
	p, err := c.PtyAttach(context.Background(), wire.PtyAttach{Open: &wire.PtyOpen{Argv: []string{"sh"}, Cols: cols, Rows: rows, Env: map[string]string{"PS1": "$ "}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestPtyEchoResizeAndExit(t *testing.T) {
	noLeaks(t)
	c := pair(t)
	p := openShell(t, c, 80, 24)
	p.Input([]byte("echo $((6*7))\n"))
	readUntil(t, p, "42")
	p.Input([]byte("stty size\n"))
	readUntil(t, p, "24 80")
	if err := p.Control(wire.PtyControl{Type: "resize", Cols: 132, Rows: 40}); err != nil {
		t.Fatal(err)
	}
	p.Input([]byte("stty size\n"))
	readUntil(t, p, "40 132")
	p.Input([]byte("exit 5\n"))
	for {
		_, exit, err := p.Next()
		if err != nil {
			t.Fatal(err)
		}
		if exit != nil {
			if exit.ExitCode != 5 {
				t.Fatalf("exit %+v", exit)
			}
			return
		}
	}
}

func TestPtyReattachReplaysAndViewersShare(t *testing.T) {
	noLeaks(t)
	c := pair(t)
	p := openShell(t, c, 80, 24)
	id := p.Info.ID
	p.Input([]byte("echo before-$((1+1))\n"))
	readUntil(t, p, "before-2")
	p.Close() // detach: the session goes on

	ctx := context.Background()
	a, err := c.PtyAttach(ctx, wire.PtyAttach{Session: id, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	readUntil(t, a, "before-2")
	b, err := c.PtyAttach(ctx, wire.PtyAttach{Session: id})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// The detached viewer leaves asynchronously: wait for it to be gone.
	var list []wire.PtyInfo
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		list, err = c.PtyList(ctx)
		if err == nil && len(list) == 1 && list[0].Viewers == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("list: %+v %v", list, err)
		}
	}
	a.Input([]byte("echo both-$((2+2))\n"))
	readUntil(t, a, "both-4")
	readUntil(t, b, "both-4")
}

func TestPtyKillLeavesNoProcess(t *testing.T) {
	noLeaks(t)
	c, srv := pairServer(t)
	p := openShell(t, c, 80, 24)
	// A background job in its own process group, and a process that starts a
	// session of its own: both must die with the session.
	p.Input([]byte("sleep 1001 & setsid sleep 1002 & echo started\n"))
	readUntil(t, p, "started")
	// Once the second has left the session (setsid runs after the echo),
	// it is found only through the terminal it holds.
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		inSession := sessionTree(p.Info.PID, "")
		pids = sessionTree(p.Info.PID, ttyOf(t, srv, p.Info.ID))
		if len(inSession) >= 2 && len(pids) == len(inSession)+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session tree %v, holders of the terminal %v", inSession, pids)
		}
	}
	if err := c.PtyKill(context.Background(), p.Info.ID); err != nil {
		t.Fatal(err)
	}
	// SIGKILL is sent; a loaded machine may take a moment to finish them.
	for _, pid := range pids {
		deadline := time.Now().Add(3 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			t.Errorf("process %d survived the kill", pid)
		}
	}
	if list, _ := c.PtyList(context.Background()); len(list) != 0 {
		t.Fatalf("session still listed: %+v", list)
	}
	if err := c.PtyKill(context.Background(), p.Info.ID); !errors.Is(err, agent.ErrNoSession) {
		t.Fatalf("second kill: %v", err)
	}
	if _, err := c.PtyAttach(context.Background(), wire.PtyAttach{Session: p.Info.ID}); !errors.Is(err, agent.ErrNoSession) {
		t.Fatalf("attach to a killed session: %v", err)
	}
}

func TestPtyScrollbackIsBounded(t *testing.T) {
	noLeaks(t)
	c := pair(t)
	p := openShell(t, c, 80, 24)
	p.Input([]byte("head -c 600000 /dev/zero | tr '\\0' x; echo; echo done-$((3*3))\n"))
	readUntil(t, p, "done-9")
	p.Close()
	a, err := c.PtyAttach(context.Background(), wire.PtyAttach{Session: p.Info.ID, Replay: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	got := readUntil(t, a, "done-9")
	if len(got) > Scrollback {
		t.Fatalf("replayed %d bytes, more than the %d of scrollback", len(got), Scrollback)
	}
}

// ttyOf reads a session's terminal path from the agent's server.
func ttyOf(t *testing.T, srv *Server, id string) string {
	t.Helper()
	s, ok := srv.ptys.get(id)
	if !ok {
		t.Fatalf("session %s not found", id)
	}
	return s.tty
}

// alive reports whether pid exists and is not a zombie waiting to be reaped.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || len(b) < i+3 || b[i+2] != 'Z'
}

// TestInputWhileTheShellExitsKeepsItsExit: keystrokes that reach the
// terminal while its shell exits (as the CLI's Ctrl-Ds after its input
// ended do) do not end the viewer before it is sent the exit.
func TestInputWhileTheShellExitsKeepsItsExit(t *testing.T) {
	noLeaks(t)
	c := pair(t)
	p := openShell(t, c, 80, 24)
	if err := p.Input([]byte("exit 5\n")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			if p.Input([]byte{4}) != nil {
				return
			}
		}
	}()
	_ = p.SetReadDeadline(time.Now().Add(30 * time.Second))
	for {
		_, exit, err := p.Next()
		if err != nil {
			t.Fatalf("the stream ended without the exit: %v", err)
		}
		if exit != nil {
			if exit.ExitCode != 5 {
				t.Fatalf("exit %+v, want 5", exit)
			}
			return
		}
	}
}
