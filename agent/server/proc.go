package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bothy/bothy/agent/wire"
	"golang.org/x/sys/unix"
)

// Limits of background processes.
const (
	// procExitedKept is how many exited processes stay listed.
	procExitedKept = 64
	// procChunk is the largest output record.
	procChunk = 64 << 10
	// followPiece is the largest output record sent to a reader of the log.
	followPiece = 4 << 10
	// procDrain is how long, after a process exits, its output may still
	// arrive (from children that hold its pipes) before its log ends.
	procDrain = time.Second
)

// procs keeps the agent's background processes.
type procs struct {
	mu     sync.Mutex
	m      map[int]*proc
	logs   *logBudget
	killed bool // killAll ran: a process that registers after it is killed at once
}

// logBudget bounds the output all processes' logs keep together: they
// live in the agent, PID 1, and a sandbox's many chatty processes (8 MiB
// of log each by default) must not grow it until the kernel kills it, and
// the sandbox with it. Past the budget, every log keeps no more than its
// fair share (the budget over the logs there are), and never less than
// wire.MinProcLogBytes: the one that grew trims itself, and then the others
// are trimmed too, those that ended or grew while the budget had room.
type logBudget struct {
	limit int64
	kept  atomic.Int64 // bytes kept by all logs
	// settled is what the logs kept after the last rebalance (0 after a
	// log is forgotten).
	settled atomic.Int64
	mu      sync.Mutex // guards logs; taken after a log's mu, never before
	logs    map[*procLog]struct{}
}

func (b *logBudget) add(l *procLog) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.logs == nil {
		b.logs = map[*procLog]struct{}{}
	}
	b.logs[l] = struct{}{}
}

func (b *logBudget) remove(l *procLog) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.logs, l)
	b.settled.Store(0)
}

// share is what each log may keep while the budget is exceeded.
func (b *logBudget) share() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(b.limit/int64(max(len(b.logs), 1)), wire.MinProcLogBytes)
}

// maybeRebalance rebalances when the logs keep more than the budget, and
// a chunk more than the last rebalance left: the one chunk each log keeps,
// and the floor of each share, can hold them over it for good, and a
// rebalance then at every write would lock every log each time.
func (b *logBudget) maybeRebalance() {
	if kept := b.kept.Load(); kept > b.limit && kept > b.settled.Load()+procChunk {
		b.rebalance()
		b.settled.Store(b.kept.Load())
	}
}

// rebalance trims every log to its fair share; the caller holds no log's
// lock.
func (b *logBudget) rebalance() {
	b.mu.Lock()
	logs := slices.Collect(maps.Keys(b.logs))
	share := max(b.limit/int64(max(len(logs), 1)), wire.MinProcLogBytes)
	b.mu.Unlock()
	for _, l := range logs {
		l.mu.Lock()
		l.trim(share)
		l.mu.Unlock()
	}
}

// logBudgetOf is the budget of a sandbox whose memory limit is limit bytes
// (0: none): a quarter of it, at least 16 MiB; 1 GiB without a limit.
func logBudgetOf(limit int64) int64 {
	if limit <= 0 || limit >= 1<<50 {
		return 1 << 30
	}
	return max(limit/4, 16<<20)
}

// proc is one background process and its output.
type proc struct {
	info  wire.ProcInfo // guarded by mu (the ProcInfo's log fields come from log)
	mu    sync.Mutex
	stdin *os.File
	log   *procLog
	done  chan struct{} // closed when the process has exited
}

// procLog is a process's recent output, both streams in one sequence of
// byte offsets.
type procLog struct {
	mu     sync.Mutex
	chunks []logChunk
	start  int64 // the offset of the oldest byte kept
	end    int64 // the offset after the last byte
	ended  bool
	// released: forgotten; it keeps nothing more.
	released bool
	wake     chan struct{} // closed and replaced at every change
	limit    int64         // the most output kept
	budget   *logBudget
}

type logChunk struct {
	stream string
	off    int64
	data   []byte
}

func newProcLog(limit int64, budget *logBudget) *procLog {
	l := &procLog{wake: make(chan struct{}), limit: limit, budget: budget}
	budget.add(l)
	return l
}

func (l *procLog) changed() {
	close(l.wake)
	l.wake = make(chan struct{})
}

func (l *procLog) append(stream string, p []byte) {
	l.mu.Lock()
	if l.released {
		// Forgotten, its pipes still written (a grandchild holds them):
		// nothing is kept, or counted.
		l.end += int64(len(p))
		l.start = l.end
		l.mu.Unlock()
		return
	}
	l.chunks = append(l.chunks, logChunk{stream: stream, off: l.end, data: append([]byte(nil), p...)})
	l.end += int64(len(p))
	over := l.budget.kept.Add(int64(len(p))) > l.budget.limit
	keep := l.limit
	if over {
		keep = min(keep, l.budget.share())
	}
	l.trim(keep)
	l.changed()
	l.mu.Unlock()
	if over {
		l.budget.maybeRebalance()
	}
}

// trim drops the oldest chunks while the log keeps more than keep bytes,
// never its last chunk; the caller holds l.mu.
func (l *procLog) trim(keep int64) {
	for l.end-l.start > keep && len(l.chunks) > 1 {
		l.budget.kept.Add(-(l.chunks[1].off - l.start))
		l.start = l.chunks[1].off
		l.chunks[0] = logChunk{}
		l.chunks = l.chunks[1:]
	}
}

// release gives back what a forgotten log kept.
func (l *procLog) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.budget.kept.Add(-(l.end - l.start))
	l.budget.remove(l)
	l.chunks, l.start, l.released = nil, l.end, true
}

func (l *procLog) finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		l.ended = true
		l.changed()
	}
}

// from returns the records from offset on: a gap first if some of that
// output was dropped; whether the log has ended; and a channel closed at the
// next change.
func (l *procLog) from(off int64) ([]wire.ProcRecord, int64, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []wire.ProcRecord
	if off < l.start {
		out = append(out, wire.ProcRecord{Type: "gap", Offset: off, To: l.start})
		off = l.start
	}
	i := sort.Search(len(l.chunks), func(i int) bool { return l.chunks[i].off+int64(len(l.chunks[i].data)) > off })
	for ; i < len(l.chunks); i++ {
		c := l.chunks[i]
		data := c.data[max(0, off-c.off):]
		out = append(out, wire.ProcRecord{Type: "output", Stream: c.stream, Offset: max(off, c.off), Data: data})
	}
	return out, l.end, l.ended, l.wake
}

func newProcs(logBytes int64) *procs {
	return &procs{m: map[int]*proc{}, logs: &logBudget{limit: logBytes}}
}

// snapshot is p's information now.
func (p *proc) snapshot() wire.ProcInfo {
	p.mu.Lock()
	info := p.info
	info.StdinOpen = p.stdin != nil
	p.mu.Unlock()
	p.log.mu.Lock()
	info.OutputBytes, info.OutputFrom = p.log.end, p.log.start
	p.log.mu.Unlock()
	return info
}

// start starts req as a background process in a process group of its own.
func (s *Server) startProc(req *wire.ProcStart) wire.ProcAnswer {
	if req == nil {
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: "proc_start without a process"}
	}
	logBytes := req.LogBytes
	if logBytes == 0 {
		logBytes = wire.ProcLogBytes
	}
	if logBytes < wire.MinProcLogBytes || logBytes > wire.MaxProcLogBytes {
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: fmt.Sprintf("log_bytes: want %d to %d", wire.MinProcLogBytes, wire.MaxProcLogBytes)}
	}
	cmd, _, err := s.command(req.Argv, req.User, req.Env, req.Cwd)
	if err != nil {
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: err.Error()}
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: err.Error()}
	}
	defer null.Close()
	stdinR, stdinW := null, (*os.File)(nil)
	if req.Stdin {
		if stdinR, stdinW, err = os.Pipe(); err != nil {
			return wire.ProcAnswer{Code: wire.ProcInvalid, Error: err.Error()}
		}
		defer stdinR.Close()
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: err.Error()}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: err.Error()}
	}
	started := time.Now().UTC()
	osp, waitCh, err := s.children().start(func() (*os.Process, error) {
		return os.StartProcess(cmd.path, req.Argv, cmd.attr(stdinR, outW, errW))
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if stdinW != nil {
			stdinW.Close()
		}
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: err.Error()}
	}
	pid := osp.Pid
	osp.Release()
	p := &proc{stdin: stdinW, log: newProcLog(logBytes, s.procs.logs), done: make(chan struct{}), info: wire.ProcInfo{
		PID: pid, Tag: req.Tag, Argv: req.Argv, Cwd: cmd.cwd, User: req.User, State: wire.ProcRunning, StartedAt: started,
	}}
	s.procs.mu.Lock()
	s.procs.m[pid] = p
	if s.procs.killed {
		// The server closed while this one started.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	s.procs.mu.Unlock()

	var pumps sync.WaitGroup
	for _, f := range []struct {
		r    *os.File
		name string
	}{{outR, "stdout"}, {errR, "stderr"}} {
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			defer f.r.Close()
			buf := make([]byte, procChunk)
			for {
				n, err := f.r.Read(buf)
				if n > 0 {
					p.log.append(f.name, buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	var timer *time.Timer
	if req.TimeoutMs > 0 {
		timer = time.AfterFunc(time.Duration(req.TimeoutMs)*time.Millisecond, func() {
			p.mu.Lock()
			p.info.TimedOut = true
			p.mu.Unlock()
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		})
	}
	go func() {
		ws := <-waitCh
		if timer != nil {
			timer.Stop()
		}
		ended := time.Now().UTC()
		code, sig := exitOf(ws.status)
		p.mu.Lock()
		p.info.State, p.info.EndedAt, p.info.ExitCode, p.info.Signal = wire.ProcExited, &ended, &code, sig
		p.info.CPUMs = float64(ws.rusage.Utime.Nano()+ws.rusage.Stime.Nano()) / 1e6
		p.info.PeakMemoryKB = ws.rusage.Maxrss
		if p.stdin != nil {
			p.stdin.Close()
			p.stdin = nil
		}
		p.mu.Unlock()
		close(p.done)
		// Output still in the pipes arrives; children that keep them open
		// do not hold the log open for long.
		drained := make(chan struct{})
		go func() { pumps.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(procDrain):
		}
		p.log.finish()
		s.procs.forgetOld()
	}()
	info := p.snapshot()
	return wire.ProcAnswer{Info: &info}
}

// forgetOld keeps only the most recent procExitedKept exited processes.
func (ps *procs) forgetOld() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	type ended struct {
		pid int
		at  time.Time
	}
	var exited []ended
	for pid, p := range ps.m {
		p.mu.Lock()
		if p.info.EndedAt != nil {
			exited = append(exited, ended{pid, *p.info.EndedAt})
		}
		p.mu.Unlock()
	}
	if len(exited) <= procExitedKept {
		return
	}
	sort.Slice(exited, func(i, j int) bool { return exited[i].at.Before(exited[j].at) })
	for _, e := range exited[:len(exited)-procExitedKept] {
		ps.m[e.pid].log.release()
		delete(ps.m, e.pid)
	}
}

func (ps *procs) get(pid int) (*proc, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	p, ok := ps.m[pid]
	return p, ok
}

func (ps *procs) list(tag string) []wire.ProcInfo {
	ps.mu.Lock()
	all := make([]*proc, 0, len(ps.m))
	for _, p := range ps.m {
		all = append(all, p)
	}
	ps.mu.Unlock()
	out := []wire.ProcInfo{}
	for _, p := range all {
		if info := p.snapshot(); tag == "" || info.Tag == tag {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out
}

// killAll kills every running process group, at the agent's shutdown.
func (ps *procs) killAll() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.killed = true
	for pid, p := range ps.m {
		select {
		case <-p.done:
		default:
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
}

// serveProc answers the proc_* operations other than proc_start and
// proc_logs.
func (s *Server) serveProc(ctx context.Context, op string, req *wire.ProcRequest) wire.ProcAnswer {
	if req == nil {
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: op + " without a request"}
	}
	if op == "proc_list" {
		return wire.ProcAnswer{List: s.procs.list(req.Tag)}
	}
	p, ok := s.procs.get(req.PID)
	if !ok {
		return wire.ProcAnswer{Code: wire.ProcNotFound, Error: fmt.Sprintf("no process %d", req.PID)}
	}
	answer := func() wire.ProcAnswer { info := p.snapshot(); return wire.ProcAnswer{Info: &info} }
	running := func() bool {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	switch op {
	case "proc_get":
	case "proc_signal", "proc_kill":
		sig := unix.SIGKILL
		if op == "proc_signal" {
			if sig = unix.SignalNum(req.Signal); sig == 0 {
				sig = unix.SignalNum("SIG" + req.Signal)
			}
			if sig == 0 {
				return wire.ProcAnswer{Code: wire.ProcInvalid, Error: fmt.Sprintf("unknown signal %q", req.Signal)}
			}
		}
		if !running() {
			return wire.ProcAnswer{Code: wire.ProcConflict, Error: fmt.Sprintf("process %d has exited", req.PID)}
		}
		// The whole group: a shell's children go with it.
		if err := syscall.Kill(-req.PID, sig); err != nil {
			return wire.ProcAnswer{Code: wire.ProcConflict, Error: err.Error()}
		}
		if op == "proc_kill" {
			select {
			case <-p.done:
			case <-ctx.Done():
			}
		}
	case "proc_stdin":
		p.mu.Lock()
		w := p.stdin
		if req.Close {
			p.stdin = nil
		}
		p.mu.Unlock()
		if w == nil {
			return wire.ProcAnswer{Code: wire.ProcConflict, Error: fmt.Sprintf("process %d has no open stdin", req.PID)}
		}
		if len(req.Data) > 0 {
			if _, err := w.Write(req.Data); err != nil {
				return wire.ProcAnswer{Code: wire.ProcConflict, Error: "write stdin: " + err.Error()}
			}
		}
		if req.Close {
			w.Close()
		}
	case "proc_wait":
		var timeout <-chan time.Time
		if req.TimeoutMs > 0 {
			t := time.NewTimer(time.Duration(req.TimeoutMs) * time.Millisecond)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-p.done:
		case <-timeout:
		case <-ctx.Done():
		}
	default:
		return wire.ProcAnswer{Code: wire.ProcInvalid, Error: "unknown operation " + op}
	}
	return answer()
}

// serveProcLogs streams a process's output from req.From: what is kept
// now, then, with req.Follow, what comes until the log ends or the caller
// closes the stream.
// sendLog sends one output record as a log frame.
func sendLog(out *wire.FrameSender, off int64, stream string, data []byte) error {
	var head [wire.LogHead]byte
	binary.BigEndian.PutUint64(head[:8], uint64(off))
	head[8] = 'O'
	if stream == "stderr" {
		head[8] = 'E'
	}
	return out.Send2(wire.FrameLog, head[:], data)
}

func (s *Server) serveProcLogs(ctx context.Context, st net.Conn, out *wire.FrameSender, req *wire.ProcRequest) {
	if req == nil {
		_ = out.SendJSON(wire.ProcRecord{Type: "error", Data: []byte("proc_logs without a request")})
		return
	}
	p, ok := s.procs.get(req.PID)
	if !ok {
		_ = out.SendJSON(wire.ProcRecord{Type: "error", Data: []byte(fmt.Sprintf("no process %d", req.PID))})
		return
	}
	// The caller closing its side ends a follow.
	gone := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, st)
		close(gone)
	}()
	off := max(req.From, 0)
	for {
		recs, end, ended, wake := p.log.from(off)
		for _, r := range recs {
			if r.Type != "output" {
				if err := out.SendJSON(r); err != nil {
					return
				}
				continue
			}
			// Output goes as binary frames of at most followPiece bytes:
			// what bothy holds for a follower that stops reading is one
			// of them, and nothing is encoded.
			for b, o := r.Data, r.Offset; len(b) > 0; {
				n := min(len(b), followPiece)
				if err := sendLog(out, o, r.Stream, b[:n]); err != nil {
					return
				}
				b, o = b[n:], o+int64(n)
			}
		}
		off = end
		if ended || !req.Follow {
			info := p.snapshot()
			_ = out.SendJSON(wire.ProcRecord{Type: "end", Offset: end, Info: &info})
			return
		}
		select {
		case <-wake:
		case <-gone:
			return
		case <-ctx.Done():
			return
		}
	}
}
