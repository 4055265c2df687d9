package e2b

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	pb "github.com/bothy/bothy/compat/e2b/envd/process"
	"github.com/bothy/bothy/compat/e2b/envd/process/processconnect"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/shell"
)

// keepaliveEvery is how often a quiet stream sends a keepalive event, so
// that proxies keep it open (the SDK asks for 50 s).
const keepaliveEvery = 50 * time.Second

// processServer is envd's process.Process over bothy's background
// processes: a command is a bothy process, owned by the sandbox's agent,
// so it outlives the request that started it, and Connect finds it again.
type processServer struct {
	processconnect.UnimplementedProcessHandler
	s *Service
}

func (p *processServer) procs() *process.Service { return p.s.d.Processes }

// Start runs a command and streams its events: start, its output, end. The
// request's deadline (Connect-Timeout-Ms) is the command's: it is killed
// when it passes, whoever is still listening.
func (p *processServer) Start(ctx context.Context, req *connect.Request[pb.StartRequest], stream *connect.ServerStream[pb.StartResponse]) error {
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.StartResponse{Event: ev}) }
	if req.Msg.Pty != nil {
		return p.startPTY(ctx, req.Msg, send)
	}
	// The start is a call of its own: the stream waits on its output for
	// as long as it lasts, on a stack as deep as the frames under it are
	// big (issue 22).
	pid, err := p.start(ctx, req.Msg)
	if err != nil {
		return err
	}
	return p.follow(ctx, targetOf(ctx), pid, 0, send)
}

// startPTY starts a command in a new terminal session and streams it.
func (p *processServer) startPTY(ctx context.Context, m *pb.StartRequest, send func(*pb.ProcessEvent) error) error {
	t := targetOf(ctx)
	if m.Process == nil || m.Process.Cmd == "" {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("process.cmd is required"))
	}
	req := shell.Request{Argv: append([]string{m.Process.Cmd}, m.Process.Args...), Env: m.Process.Envs, User: t.user}
	if m.Process.Cwd != nil {
		req.Cwd = inHome(*m.Process.Cwd)
	}
	if size := m.Pty.GetSize(); size != nil {
		req.Cols, req.Rows = uint16(min(size.Cols, 1000)), uint16(min(size.Rows, 1000))
	}
	return p.viewPTY(ctx, t, req, send)
}

// start starts a command as a background process and says its pid.
//
//go:noinline
func (p *processServer) start(ctx context.Context, m *pb.StartRequest) (int, error) {
	t := targetOf(ctx)
	if m.Process == nil || m.Process.Cmd == "" {
		return 0, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("process.cmd is required"))
	}
	o := process.StartOptions{
		Argv: append([]string{m.Process.Cmd}, m.Process.Args...), Env: m.Process.Envs, User: t.user,
		Tag: m.GetTag(), Stdin: m.GetStdin(),
	}
	if m.Process.Cwd != nil {
		o.Cwd = inHome(*m.Process.Cwd)
	}
	if deadline, ok := ctx.Deadline(); ok {
		o.Timeout = max(time.Until(deadline), time.Millisecond)
	}
	// The process outlives this request: it is not started under its
	// deadline, which would cancel the start itself.
	info, err := p.procs().Start(context.WithoutCancel(ctx), t.owner, t.id, o)
	if err != nil {
		return 0, rpcError(err)
	}
	return info.PID, nil
}

// viewPTY streams a terminal session's events: start, its output, and its
// end when its process exits. The session outlives the stream, as a
// bothy terminal does: SendSignal ends it.
func (p *processServer) viewPTY(ctx context.Context, t target, req shell.Request, send func(*pb.ProcessEvent) error) error {
	err := p.s.d.Shell.View(ctx, t.owner, t.id, req, func(v *shell.Viewer) error {
		if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: uint32(v.Session.PID)}}}); err != nil {
			return err
		}
		for {
			b, exit, err := v.Next()
			if err != nil {
				return err
			}
			if exit != nil {
				info := process.Info{Signal: exit.Signal, ExitCode: &exit.ExitCode}
				return send(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: endOf(info)}})
			}
			out := &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Pty{Pty: b}}
			if err := send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: out}}); err != nil {
				return err
			}
		}
	})
	if ctx.Err() != nil {
		return rpcError(ctx.Err())
	}
	return rpcError(err)
}

// terminal finds the terminal session whose process a selector names, for
// the requests that act on a PTY.
func (p *processServer) terminal(ctx context.Context, t target, sel *pb.ProcessSelector) (shell.Info, error) {
	if sel == nil || sel.GetTag() != "" {
		return shell.Info{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("a terminal is named by its pid"))
	}
	info, err := p.s.d.Shell.ByPID(ctx, t.owner, t.id, int(sel.GetPid()))
	return info, rpcError(err)
}

// Update resizes a terminal.
func (p *processServer) Update(ctx context.Context, req *connect.Request[pb.UpdateRequest]) (*connect.Response[pb.UpdateResponse], error) {
	t := targetOf(ctx)
	size := req.Msg.GetPty().GetSize()
	if size == nil {
		return connect.NewResponse(&pb.UpdateResponse{}), nil
	}
	term, err := p.terminal(ctx, t, req.Msg.Process)
	if err != nil {
		return nil, err
	}
	if err := p.s.d.Shell.Resize(ctx, t.owner, t.id, term.ID, uint16(min(size.Cols, 1001)), uint16(min(size.Rows, 1001))); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.UpdateResponse{}), nil
}

// Connect streams a running process's events from now on: start, its live
// output, end.
func (p *processServer) Connect(ctx context.Context, req *connect.Request[pb.ConnectRequest], stream *connect.ServerStream[pb.ConnectResponse]) error {
	t := targetOf(ctx)
	send := func(ev *pb.ProcessEvent) error { return stream.Send(&pb.ConnectResponse{Event: ev}) }
	info, err := p.find(ctx, t, req.Msg.Process)
	if connect.CodeOf(err) == connect.CodeNotFound {
		if term, terr := p.terminal(ctx, t, req.Msg.Process); terr == nil {
			return p.viewPTY(ctx, t, shell.Request{Session: term.ID}, send)
		}
	}
	if err != nil {
		return err
	}
	return p.follow(ctx, t, info.PID, info.OutputBytes, send)
}

// follow sends a start event, then process pid's output from offset from,
// then its end; a keepalive event goes out when nothing else has for
// keepaliveEvery.
func (p *processServer) follow(ctx context.Context, t target, pid int, from int64, send func(*pb.ProcessEvent) error) error {
	var mu sync.Mutex // one Send at a time
	last := time.Now()
	emit := func(ev *pb.ProcessEvent) error {
		mu.Lock()
		defer mu.Unlock()
		last = time.Now()
		return send(ev)
	}
	if err := emit(&pb.ProcessEvent{Event: &pb.ProcessEvent_Start{Start: &pb.ProcessEvent_StartEvent{Pid: uint32(pid)}}}); err != nil {
		return err
	}
	// The keepalive is a timer, not a goroutine waiting on one: a stream
	// holds no stack of its own for it. A send under way (a client slow to
	// read) is no quiet stream: the timer looks again later.
	var keep *time.Timer
	var ended atomic.Bool
	keep = time.AfterFunc(keepaliveEvery, func() {
		if !mu.TryLock() {
			keep.Reset(keepaliveEvery)
			if ended.Load() {
				keep.Stop()
			}
			return
		}
		defer mu.Unlock()
		if ended.Load() {
			return
		}
		next := keepaliveEvery
		if quiet := time.Since(last); quiet >= keepaliveEvery {
			last = time.Now()
			_ = send(&pb.ProcessEvent{Event: &pb.ProcessEvent_Keepalive{Keepalive: &pb.ProcessEvent_KeepAlive{}}})
		} else {
			next = keepaliveEvery - quiet
		}
		keep.Reset(next)
	})
	defer func() {
		ended.Store(true)
		mu.Lock() // a keepalive being sent ends first
		keep.Stop()
		mu.Unlock()
	}()
	err := p.procs().Logs(ctx, t.owner, t.id, pid, from, true, func(r process.Record) error {
		switch r.Type {
		case process.RecordOutput:
			data := &pb.ProcessEvent_DataEvent{Output: &pb.ProcessEvent_DataEvent_Stdout{Stdout: r.Data}}
			if r.Stream == "stderr" {
				data.Output = &pb.ProcessEvent_DataEvent_Stderr{Stderr: r.Data}
			}
			return emit(&pb.ProcessEvent{Event: &pb.ProcessEvent_Data{Data: data}})
		case process.RecordEnd:
			if r.Info != nil {
				return emit(&pb.ProcessEvent{Event: &pb.ProcessEvent_End{End: endOf(*r.Info)}})
			}
		}
		return nil
	})
	return rpcError(err)
}

// endOf describes how a process ended, as envd does (Go's ProcessState).
func endOf(info process.Info) *pb.ProcessEvent_EndEvent {
	if info.Signal != "" {
		status := "signal: " + signalWords(info.Signal)
		return &pb.ProcessEvent_EndEvent{ExitCode: -1, Exited: false, Status: status, Error: &status}
	}
	code := 0
	if info.ExitCode != nil {
		code = *info.ExitCode
	}
	end := &pb.ProcessEvent_EndEvent{ExitCode: int32(code), Exited: true, Status: fmt.Sprintf("exit status %d", code)}
	if code != 0 {
		end.Error = &end.Status
	}
	return end
}

// signalWords names a signal as Go's ProcessState does.
func signalWords(sig string) string {
	switch sig {
	case "SIGKILL":
		return "killed"
	case "SIGTERM":
		return "terminated"
	case "SIGINT":
		return "interrupt"
	case "SIGHUP":
		return "hangup"
	}
	return sig
}

// find resolves a process selector: a pid, or the first running process
// with a tag.
func (p *processServer) find(ctx context.Context, t target, sel *pb.ProcessSelector) (process.Info, error) {
	switch {
	case sel == nil:
		return process.Info{}, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("process: give a pid or a tag"))
	case sel.GetTag() != "":
		list, err := p.procs().List(ctx, t.owner, t.id, sel.GetTag())
		if err != nil {
			return process.Info{}, rpcError(err)
		}
		for _, info := range list {
			if info.State == process.Running {
				return info, nil
			}
		}
		return process.Info{}, connect.NewError(connect.CodeNotFound, fmt.Errorf("no running process with tag %q", sel.GetTag()))
	}
	info, err := p.procs().Get(ctx, t.owner, t.id, int(sel.GetPid()))
	return info, rpcError(err)
}

// List lists the running processes and terminals.
func (p *processServer) List(ctx context.Context, _ *connect.Request[pb.ListRequest]) (*connect.Response[pb.ListResponse], error) {
	t := targetOf(ctx)
	list, err := p.procs().List(ctx, t.owner, t.id, "")
	if err != nil {
		return nil, rpcError(err)
	}
	out := &pb.ListResponse{}
	for _, info := range list {
		if info.State != process.Running || len(info.Argv) == 0 {
			continue
		}
		pi := &pb.ProcessInfo{Pid: uint32(info.PID), Config: &pb.ProcessConfig{Cmd: info.Argv[0], Args: info.Argv[1:], Cwd: &info.Cwd}}
		if info.Tag != "" {
			pi.Tag = &info.Tag
		}
		out.Processes = append(out.Processes, pi)
	}
	terms, err := p.s.d.Shell.List(ctx, t.owner, t.id)
	if err != nil {
		return nil, rpcError(err)
	}
	for _, term := range terms {
		if !term.Exited && len(term.Argv) > 0 {
			out.Processes = append(out.Processes, &pb.ProcessInfo{Pid: uint32(term.PID), Config: &pb.ProcessConfig{Cmd: term.Argv[0], Args: term.Argv[1:]}})
		}
	}
	return connect.NewResponse(out), nil
}

// SendInput writes to a process's stdin.
func (p *processServer) SendInput(ctx context.Context, req *connect.Request[pb.SendInputRequest]) (*connect.Response[pb.SendInputResponse], error) {
	t := targetOf(ctx)
	if keys := req.Msg.Input.GetPty(); keys != nil {
		term, err := p.terminal(ctx, t, req.Msg.Process)
		if err != nil {
			return nil, err
		}
		if err := p.s.d.Shell.Input(ctx, t.owner, t.id, term.ID, keys); err != nil {
			return nil, rpcError(err)
		}
		return connect.NewResponse(&pb.SendInputResponse{}), nil
	}
	info, err := p.find(ctx, t, req.Msg.Process)
	if err != nil {
		return nil, err
	}
	if _, err := p.procs().Stdin(ctx, t.owner, t.id, info.PID, req.Msg.Input.GetStdin(), false); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.SendInputResponse{}), nil
}

// CloseStdin closes a process's stdin.
func (p *processServer) CloseStdin(ctx context.Context, req *connect.Request[pb.CloseStdinRequest]) (*connect.Response[pb.CloseStdinResponse], error) {
	t := targetOf(ctx)
	info, err := p.find(ctx, t, req.Msg.Process)
	if err != nil {
		return nil, err
	}
	if _, err := p.procs().Stdin(ctx, t.owner, t.id, info.PID, nil, true); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.CloseStdinResponse{}), nil
}

// SendSignal sends SIGTERM or SIGKILL to a process (its whole group).
func (p *processServer) SendSignal(ctx context.Context, req *connect.Request[pb.SendSignalRequest]) (*connect.Response[pb.SendSignalResponse], error) {
	t := targetOf(ctx)
	info, err := p.find(ctx, t, req.Msg.Process)
	if connect.CodeOf(err) == connect.CodeNotFound {
		// A terminal's process: ending it ends the session.
		if term, terr := p.terminal(ctx, t, req.Msg.Process); terr == nil {
			if err := p.s.d.Shell.Kill(ctx, t.owner, t.id, term.ID); err != nil {
				return nil, rpcError(err)
			}
			return connect.NewResponse(&pb.SendSignalResponse{}), nil
		}
	}
	if err != nil {
		return nil, err
	}
	var sig string
	switch req.Msg.Signal {
	case pb.Signal_SIGNAL_SIGKILL:
		sig = "SIGKILL"
	case pb.Signal_SIGNAL_SIGTERM:
		sig = "SIGTERM"
	default:
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("signal: want SIGNAL_SIGTERM or SIGNAL_SIGKILL"))
	}
	if info.State != process.Running {
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("process with pid %d is not running", info.PID))
	}
	if _, err := p.procs().Signal(ctx, t.owner, t.id, info.PID, sig); err != nil {
		return nil, rpcError(err)
	}
	return connect.NewResponse(&pb.SendSignalResponse{}), nil
}
