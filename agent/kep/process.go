package kep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"github.com/creack/pty"

	"github.com/bothy/bothy/agent/kep/processv1"
	"github.com/bothy/bothy/agent/ptyfd"
)

// Bounds of the process service.
const (
	// maxOutput bounds each stream an Execute keeps whole; past it, the
	// rest is read and dropped.
	maxOutput = 16 << 20
	// chunk is the largest piece of output a Start event carries.
	chunk = 32 << 10
	// drainGrace is how long, after a process exits, its output may still
	// arrive from children that hold its pipes.
	drainGrace = 2 * time.Second
)

// proc is a process Start runs: what WriteStdin, SendSignal and ResizeTTY
// reach it by.
type proc struct {
	pid   int
	mu    sync.Mutex
	stdin *os.File // nil once closed
	tty   *os.File // the terminal's master side, for a process with one
}

type processService struct{ s *Runtime }

// command checks a config and resolves its working directory.
func (s *Runtime) command(cfg *processv1.ProcessConfig) (argv []string, cwd string, err error) {
	if cfg == nil || len(cfg.GetCommand()) == 0 || cfg.GetCommand()[0] == "" {
		return nil, "", connect.NewError(connect.CodeInvalidArgument, errors.New("command is required"))
	}
	cwd = s.cfg.Root
	if cfg.Cwd != nil && cfg.GetCwd() != "" {
		rel, err := s.rel(cfg.GetCwd())
		if err != nil {
			return nil, "", connect.NewError(connect.CodePermissionDenied, fmt.Errorf("cwd %q escapes the sandbox root", cfg.GetCwd()))
		}
		fi, err := s.root.Stat(rel)
		switch {
		case isEscape(err):
			return nil, "", connect.NewError(connect.CodePermissionDenied, fmt.Errorf("cwd %q escapes the sandbox root", cfg.GetCwd()))
		case err != nil:
			return nil, "", connect.NewError(connect.CodeNotFound, fmt.Errorf("cwd %q: %v", cfg.GetCwd(), err))
		case !fi.IsDir():
			return nil, "", connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("cwd %q is not a directory", cfg.GetCwd()))
		}
		cwd = filepath.Join(s.cfg.Root, filepath.FromSlash(rel))
	}
	return cfg.GetCommand(), cwd, nil
}

// spawnError is a Spawn failure as a status.
func spawnError(err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return connect.NewError(connect.CodePermissionDenied, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

// Execute runs a command to its end and answers its output whole.
func (p *processService) Execute(ctx context.Context, req *connect.Request[processv1.ExecuteRequest]) (*connect.Response[processv1.ExecuteResponse], error) {
	argv, cwd, err := p.s.command(req.Msg.GetConfig())
	if err != nil {
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	defer devnull.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	pid, exit, err := p.s.sp.Spawn(argv, req.Msg.GetConfig().GetEnvVars(), cwd, []*os.File{devnull, outW, errW}, false)
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, spawnError(err)
	}
	var stdout, stderr bytes.Buffer
	var wg sync.WaitGroup
	for _, c := range []struct {
		r   *os.File
		buf *bytes.Buffer
	}{{outR, &stdout}, {errR, &stderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(c.buf, io.LimitReader(c.r, maxOutput))
			_, _ = io.Copy(io.Discard, c.r)
		}()
	}
	code := waitOrKill(ctx, pid, exit)
	drained(&wg, outR, errR)
	return connect.NewResponse(&processv1.ExecuteResponse{ExitCode: int32(code), Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}), nil
}

// waitOrKill waits for a process's exit code (-1 when a signal ended it, as
// agent-sandbox's reference runtime reports it); when ctx ends first (its
// client went away), its group is killed.
func waitOrKill(ctx context.Context, pid int, exit <-chan syscall.WaitStatus) int {
	var ws syscall.WaitStatus
	select {
	case ws = <-exit:
	case <-ctx.Done():
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		ws = <-exit
	}
	if ws.Exited() {
		return ws.ExitStatus()
	}
	return -1
}

// drained waits for the pumps of a process's pipes to reach their end, or
// for drainGrace (a background child may hold them), then closes them.
func drained(wg *sync.WaitGroup, pipes ...*os.File) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainGrace):
		for _, f := range pipes {
			_ = f.SetReadDeadline(time.Now())
		}
		<-done
	}
	for _, f := range pipes {
		f.Close()
	}
}

// Start runs a command, with a terminal when asked, and streams its
// events: its pid, its output, its exit. A client that goes away kills it.
func (p *processService) Start(ctx context.Context, req *connect.Request[processv1.StartRequest], stream *connect.ServerStream[processv1.StartResponse]) error {
	argv, cwd, err := p.s.command(req.Msg.GetConfig())
	if err != nil {
		return err
	}
	var (
		pr    = &proc{}
		files []*os.File
		reads []*os.File // what the pumps read, and whose stream
		kinds []bool     // true: stderr
		close []*os.File // the child's ends, closed once it has them
	)
	if size := req.Msg.Pty; size != nil {
		master, tty, err := pty.Open()
		if err != nil {
			return connect.NewError(connect.CodeInternal, err)
		}
		if size.GetCols() > 0 && size.GetRows() > 0 {
			_ = pty.Setsize(master, &pty.Winsize{Cols: uint16(size.GetCols()), Rows: uint16(size.GetRows())})
		}
		if master, err = ptyfd.Pollable(master); err != nil {
			tty.Close()
			return connect.NewError(connect.CodeInternal, err)
		}
		pr.stdin, pr.tty = master, master
		files, close = []*os.File{tty, tty, tty}, []*os.File{tty}
		reads, kinds = []*os.File{master}, []bool{false}
	} else {
		inR, inW, err := os.Pipe()
		if err != nil {
			return connect.NewError(connect.CodeInternal, err)
		}
		outR, outW, err := os.Pipe()
		if err != nil {
			inR.Close()
			inW.Close()
			return connect.NewError(connect.CodeInternal, err)
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			for _, f := range []*os.File{inR, inW, outR, outW} {
				f.Close()
			}
			return connect.NewError(connect.CodeInternal, err)
		}
		pr.stdin = inW
		files, close = []*os.File{inR, outW, errW}, []*os.File{inR, outW, errW}
		reads, kinds = []*os.File{outR, errR}, []bool{false, true}
	}
	pid, exit, err := p.s.sp.Spawn(argv, req.Msg.GetConfig().GetEnvVars(), cwd, files, pr.tty != nil)
	for _, f := range close {
		f.Close()
	}
	if err != nil {
		for _, f := range reads {
			f.Close()
		}
		if pr.stdin != nil && pr.stdin != pr.tty {
			pr.stdin.Close()
		}
		return spawnError(err)
	}
	pr.pid = pid
	p.s.mu.Lock()
	p.s.procs[int32(pid)] = pr
	p.s.mu.Unlock()
	defer func() {
		p.s.mu.Lock()
		delete(p.s.procs, int32(pid))
		p.s.mu.Unlock()
		pr.mu.Lock()
		stdin := pr.stdin
		pr.stdin = nil
		pr.mu.Unlock()
		if stdin != nil && stdin != pr.tty {
			stdin.Close() // wakes a write that waits on it
		}
	}()

	var sendMu sync.Mutex
	send := func(ev *processv1.StartResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(ev)
	}
	if err := send(&processv1.StartResponse{Event: &processv1.StartResponse_Init{Init: &processv1.InitEvent{ProcessId: int32(pid)}}}); err != nil {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exit
		for _, f := range reads {
			f.Close()
		}
		return err
	}
	var wg sync.WaitGroup
	for i, r := range reads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for {
				n, err := r.Read(buf)
				if n > 0 {
					data := bytes.Clone(buf[:n])
					ev := &processv1.StartResponse{Event: &processv1.StartResponse_Stdout{Stdout: data}}
					if kinds[i] {
						ev = &processv1.StartResponse{Event: &processv1.StartResponse_Stderr{Stderr: data}}
					}
					if send(ev) != nil {
						_ = syscall.Kill(-pid, syscall.SIGKILL)
						return
					}
				}
				if err != nil {
					return // the end, or (a terminal's) EIO once its last holder closed it
				}
			}
		}()
	}
	code := waitOrKill(ctx, pid, exit)
	drained(&wg, reads...)
	if ctx.Err() != nil {
		return connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	return send(&processv1.StartResponse{Event: &processv1.StartResponse_Exit{Exit: &processv1.ExitEvent{ExitCode: int32(code)}}})
}

func (s *Runtime) lookup(pid int32) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr, ok := s.procs[pid]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process %d not found", pid))
	}
	return pr, nil
}

// WriteStdin writes to a started process's stdin, or ends it.
func (p *processService) WriteStdin(ctx context.Context, req *connect.Request[processv1.WriteStdinRequest]) (*connect.Response[processv1.WriteStdinResponse], error) {
	pr, err := p.s.lookup(req.Msg.GetProcessId())
	if err != nil {
		return nil, err
	}
	pr.mu.Lock()
	stdin := pr.stdin
	if stdin != nil && req.Msg.GetEof() != nil && stdin != pr.tty {
		pr.stdin = nil // closed below, once
	}
	pr.mu.Unlock()
	if stdin == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("process %d has no stdin open", pr.pid))
	}
	switch {
	case req.Msg.GetEof() != nil && stdin == pr.tty:
		// A terminal's end of input is its EOF character.
		err = writeBounded(ctx, stdin, []byte{4})
	case req.Msg.GetEof() != nil:
		err = stdin.Close()
	default:
		// Not under the lock: a process that does not read would hold it,
		// and the stream's end, which closes stdin, wakes this write.
		err = writeBounded(ctx, stdin, req.Msg.GetInput())
	}
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process %d has exited", pr.pid))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("process %d is not reading its stdin", pr.pid))
		}
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&processv1.WriteStdinResponse{}), nil
}

// stdinWait bounds a write to a process that does not read its stdin.
const stdinWait = 30 * time.Second

// writeBounded writes b to f, waiting no longer than ctx allows and
// stdinWait.
func writeBounded(ctx context.Context, f *os.File, b []byte) error {
	deadline := time.Now().Add(stdinWait)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = f.SetWriteDeadline(deadline)
	defer f.SetWriteDeadline(time.Time{})
	_, err := f.Write(b)
	return err
}

// signals are the spec's signals.
var signals = map[processv1.Signal]syscall.Signal{
	processv1.Signal_SIGNAL_SIGINT:  syscall.SIGINT,
	processv1.Signal_SIGNAL_SIGKILL: syscall.SIGKILL,
	processv1.Signal_SIGNAL_SIGTERM: syscall.SIGTERM,
}

// SendSignal signals a started process's group.
func (p *processService) SendSignal(_ context.Context, req *connect.Request[processv1.SendSignalRequest]) (*connect.Response[processv1.SendSignalResponse], error) {
	pr, err := p.s.lookup(req.Msg.GetProcessId())
	if err != nil {
		return nil, err
	}
	sig, ok := signals[req.Msg.GetSignal()]
	if !ok {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("unsupported or unspecified signal %v", req.Msg.GetSignal()))
	}
	if err := syscall.Kill(-pr.pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process %d has exited", pr.pid))
		}
		return nil, connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewResponse(&processv1.SendSignalResponse{}), nil
}

// ResizeTTY resizes a started process's terminal.
func (p *processService) ResizeTTY(_ context.Context, req *connect.Request[processv1.ResizeTTYRequest]) (*connect.Response[processv1.ResizeTTYResponse], error) {
	pr, err := p.s.lookup(req.Msg.GetProcessId())
	if err != nil {
		return nil, err
	}
	if pr.tty == nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("process %d has no terminal", pr.pid))
	}
	if req.Msg.GetCols() == 0 || req.Msg.GetRows() == 0 || req.Msg.GetCols() > 65535 || req.Msg.GetRows() > 65535 {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("cols and rows must be between 1 and 65535"))
	}
	if err := ptyfd.SetSize(pr.tty, uint16(req.Msg.GetCols()), uint16(req.Msg.GetRows())); err != nil {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return connect.NewResponse(&processv1.ResizeTTYResponse{}), nil
}

// killAll kills every process Start runs.
func (s *Runtime) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pr := range s.procs {
		_ = syscall.Kill(-pr.pid, syscall.SIGKILL)
	}
}
