package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/agent/wire"
)

// logsOf reads a process's output from off (following or not) and returns
// it by stream, the records, and the end record's information.
func logsOf(t *testing.T, c *agent.Conn, pid int, off int64, follow bool) (map[string]string, []wire.ProcRecord, *wire.ProcInfo) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]string{}
	var recs []wire.ProcRecord
	var end *wire.ProcInfo
	err := c.ProcLogs(ctx, wire.ProcRequest{PID: pid, From: off, Follow: follow}, func(r wire.ProcRecord) error {
		recs = append(recs, r)
		switch r.Type {
		case "output":
			out[r.Stream] += string(r.Data)
		case "end":
			end = r.Info
		}
		return nil
	})
	if err != nil {
		t.Fatalf("logs of %d: %v", pid, err)
	}
	return out, recs, end
}

func waitProc(t *testing.T, c *agent.Conn, pid int) wire.ProcInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := c.Proc(ctx, wire.ProcWait, wire.ProcRequest{PID: pid})
	if err != nil || a.Info == nil || a.Info.State != wire.ProcExited {
		t.Fatalf("wait %d: %+v %v", pid, a, err)
	}
	return *a.Info
}

func TestBackgroundProcessesLogsStdinSignals(t *testing.T) {
	noLeaks(t)
	c := pair(t)
	ctx := context.Background()

	// Output of both streams, followed to the end, in order, with offsets.
	p, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"sh", "-c", "echo one; echo two >&2; echo three; exit 3"}, Tag: "web"})
	if err != nil || p.PID == 0 || p.State != wire.ProcRunning || p.Tag != "web" {
		t.Fatalf("start: %+v %v", p, err)
	}
	out, recs, end := logsOf(t, c, p.PID, 0, true)
	if out["stdout"] != "one\nthree\n" || out["stderr"] != "two\n" || end == nil || end.State != wire.ProcExited || *end.ExitCode != 3 {
		t.Fatalf("followed logs: %q, end %+v", out, end)
	}
	var next int64
	for _, r := range recs {
		if r.Type == "output" {
			if r.Offset != next {
				t.Fatalf("record at %d, want %d: %+v", r.Offset, next, recs)
			}
			next += int64(len(r.Data))
		}
	}
	// Resuming from an offset gives exactly the records after it.
	_, rest, _ := logsOf(t, c, p.PID, recs[0].Offset+int64(len(recs[0].Data)), false)
	if len(rest) != len(recs)-1 {
		t.Fatalf("resumed after the first record: %+v, want %+v", rest, recs[1:])
	}
	for i, r := range rest[:len(rest)-1] {
		if want := recs[i+1]; r.Offset != want.Offset || string(r.Data) != string(want.Data) || r.Stream != want.Stream {
			t.Fatalf("resumed record %d: %+v, want %+v", i, r, want)
		}
	}

	// stdin: cat echoes what is written, and ends when stdin closes.
	cat, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"cat"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Proc(ctx, wire.ProcStdin, wire.ProcRequest{PID: cat.PID, Data: []byte("hello\n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Proc(ctx, wire.ProcStdin, wire.ProcRequest{PID: cat.PID, Data: []byte("bye\n"), Close: true}); err != nil {
		t.Fatal(err)
	}
	if info := waitProc(t, c, cat.PID); *info.ExitCode != 0 {
		t.Fatalf("cat: %+v", info)
	}
	if out, _, _ := logsOf(t, c, cat.PID, 0, true); out["stdout"] != "hello\nbye\n" {
		t.Fatalf("cat echoed %q", out)
	}
	var pe *agent.ProcError
	if _, err := c.Proc(ctx, wire.ProcStdin, wire.ProcRequest{PID: cat.PID, Data: []byte("x")}); !errors.As(err, &pe) || pe.Code != wire.ProcConflict {
		t.Fatalf("stdin after close: %v", err)
	}

	// A signal goes to the whole group; kill waits for the exit.
	sleeper, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"sh", "-c", "sleep 1000 & sleep 1001; wait"}, Tag: "sleepers"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Proc(ctx, wire.ProcList, wire.ProcRequest{Tag: "sleepers"})
	if err != nil || len(a.List) != 1 || a.List[0].PID != sleeper.PID || a.List[0].State != wire.ProcRunning {
		t.Fatalf("list by tag: %+v %v", a, err)
	}
	if _, err := c.Proc(ctx, wire.ProcSignal, wire.ProcRequest{PID: sleeper.PID, Signal: "NOPE"}); !errors.As(err, &pe) || pe.Code != wire.ProcInvalid {
		t.Fatalf("unknown signal: %v", err)
	}
	if _, err := c.Proc(ctx, wire.ProcSignal, wire.ProcRequest{PID: sleeper.PID, Signal: "TERM"}); err != nil {
		t.Fatal(err)
	}
	if info := waitProc(t, c, sleeper.PID); info.Signal != "SIGTERM" {
		t.Fatalf("after SIGTERM: %+v", info)
	}
	if _, err := c.Proc(ctx, wire.ProcKill, wire.ProcRequest{PID: sleeper.PID}); !errors.As(err, &pe) || pe.Code != wire.ProcConflict {
		t.Fatalf("kill of an exited process: %v", err)
	}
	if _, err := c.Proc(ctx, wire.ProcGet, wire.ProcRequest{PID: 999999}); !errors.As(err, &pe) || pe.Code != wire.ProcNotFound {
		t.Fatalf("get of no process: %v", err)
	}
	if _, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"no-such-program"}}); !errors.As(err, &pe) || pe.Code != wire.ProcInvalid {
		t.Fatalf("start of no program: %v", err)
	}

	// A wait with a timeout returns the running process.
	long, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if a, err := c.Proc(ctx, wire.ProcWait, wire.ProcRequest{PID: long.PID, TimeoutMs: 10}); err != nil || a.Info.State != wire.ProcRunning {
		t.Fatalf("wait with a timeout: %+v %v", a, err)
	}
	if a, err := c.Proc(ctx, wire.ProcKill, wire.ProcRequest{PID: long.PID}); err != nil || a.Info.State != wire.ProcExited || a.Info.Signal != "SIGKILL" {
		t.Fatalf("kill: %+v %v", a, err)
	}
}

// TestProcessOutputIsBounded: a process that prints far more than it keeps
// leaves its last wire.ProcLogBytes, and a reader from 0 gets a gap first.
func TestProcessOutputIsBounded(t *testing.T) {
	c := pair(t)
	ctx := context.Background()
	p, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"sh", "-c", "head -c 30000000 /dev/zero; echo; echo last-line"}})
	if err != nil {
		t.Fatal(err)
	}
	waitProc(t, c, p.PID)
	// Follow to the log's end (the pipes drain after the exit), then read
	// what is kept in one go.
	logsOf(t, c, p.PID, 0, true)
	out, recs, end := logsOf(t, c, p.PID, 0, false)
	if len(recs) == 0 || recs[0].Type != "gap" || recs[0].Offset != 0 || recs[0].To == 0 {
		t.Fatalf("first record %+v, want a gap from 0", recs[0])
	}
	if !strings.HasSuffix(out["stdout"], "\nlast-line\n") || int64(len(out["stdout"])) > wire.ProcLogBytes {
		t.Fatalf("kept %d bytes ending %q", len(out["stdout"]), out["stdout"][max(0, len(out["stdout"])-20):])
	}
	if end.OutputBytes != int64(30000000+len("\nlast-line\n")) || end.OutputFrom != recs[0].To {
		t.Fatalf("end: %+v", end)
	}
}

// TestProcessLogBytes: a process keeps the amount of output it asked for,
// and an amount out of bounds is refused.
func TestProcessLogBytes(t *testing.T) {
	c := pair(t)
	ctx := context.Background()
	p, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"sh", "-c", "head -c 1000000 /dev/zero"}, LogBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	waitProc(t, c, p.PID)
	logsOf(t, c, p.PID, 0, true)
	out, _, end := logsOf(t, c, p.PID, 0, false)
	// The last chunk that goes past the bound is kept whole.
	if kept := int64(len(out["stdout"])); kept > 64<<10+procChunk || end.OutputFrom < 1000000-(64<<10)-procChunk {
		t.Fatalf("kept %d bytes from %d", kept, end.OutputFrom)
	}
	for _, n := range []int64{1, wire.MaxProcLogBytes + 1} {
		if _, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"true"}, LogBytes: n}); err == nil || !strings.Contains(err.Error(), "log_bytes") {
			t.Fatalf("log_bytes %d: %v", n, err)
		}
	}
}

// TestProcessLogsShareABudget: the logs of all processes together keep
// about the agent's budget (a quarter of the sandbox's memory): past it,
// each keeps its fair share of its latest output, whichever grew while the
// budget had room, and the count of what they keep stays exact.
func TestProcessLogsShareABudget(t *testing.T) {
	c, srv := pairServer(t)
	srv.procs.logs.limit = 4 << 20
	ctx := context.Background()
	var pids []int
	for i := range 4 {
		p, err := c.StartProc(ctx, wire.ProcStart{Argv: []string{"sh", "-c", fmt.Sprintf("head -c 8000000 /dev/zero; echo; echo last-%d", i)}})
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, p.PID)
	}
	var total int64
	for i, pid := range pids {
		waitProc(t, c, pid)
		logsOf(t, c, pid, 0, true)
		out, _, end := logsOf(t, c, pid, 0, false)
		kept := int64(len(out["stdout"]))
		if !strings.HasSuffix(out["stdout"], fmt.Sprintf("\nlast-%d\n", i)) || end.OutputBytes-end.OutputFrom != kept {
			t.Fatalf("process %d kept %d bytes (%+v) ending %q", i, kept, end, out["stdout"][max(0, len(out["stdout"])-20):])
		}
		total += kept
	}
	if got := srv.procs.logs.kept.Load(); got != total {
		t.Fatalf("the budget counts %d bytes, the logs keep %d", got, total)
	}
	// Each log keeps whole chunks, so the last chunk of each may go past
	// its share.
	if total > srv.procs.logs.limit+int64(len(pids))*procChunk {
		t.Fatalf("the logs keep %d bytes, over the budget of %d", total, srv.procs.logs.limit)
	}
}

// TestLogBudgetOf: a quarter of the sandbox's memory, with a floor, and a
// default without a limit (cgroup v1 says so with a huge number).
func TestLogBudgetOf(t *testing.T) {
	for _, c := range []struct{ limit, want int64 }{
		{0, 1 << 30}, {1 << 62, 1 << 30}, {2 << 30, 512 << 20}, {32 << 20, 16 << 20},
	} {
		if got := logBudgetOf(c.limit); got != c.want {
			t.Errorf("logBudgetOf(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
}

// TestLogBudgetTrimsEveryLog: a log that grew while the budget had room,
// and has ended since, gives back its excess when others grow past the
// budget.
func TestLogBudgetTrimsEveryLog(t *testing.T) {
	b := &logBudget{limit: 4 << 20}
	chunk := make([]byte, procChunk)
	first := newProcLog(wire.ProcLogBytes, b)
	for range (3 << 20) / procChunk {
		first.append("stdout", chunk)
	}
	first.finish()
	for range 3 {
		l := newProcLog(wire.ProcLogBytes, b)
		for range (2 << 20) / procChunk {
			l.append("stdout", chunk)
		}
	}
	if kept := first.end - first.start; kept > 1<<20 {
		t.Fatalf("the first log keeps %d bytes, over its share of %d", kept, 1<<20)
	}
	if kept := b.kept.Load(); kept > b.limit {
		t.Fatalf("the logs keep %d bytes, over the budget of %d", kept, b.limit)
	}
}
