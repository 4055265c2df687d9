package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bothy/bothy/agent/wire"
	"github.com/hashicorp/yamux"
)

// resultDrain bounds how long a stream's reader waits, after the result is sent,
// for the caller to close its side.
const resultDrain = 5 * time.Second

// Server serves bothy's requests inside a sandbox. Its children are
// reaped by the process's one reaper.
type Server struct {
	log *slog.Logger
	// closed: the server starts no more children.
	closed  atomic.Bool
	baseEnv []string
	ptys    *ptyManager
	watches *watchHub
	procs   *procs // background processes
	// listBudget bounds what a capture lists of changed paths before it
	// streams them: a quarter of the sandbox's memory, as logs have.
	listBudget int64
	// host is the runtime host of a runner container, nil in a sandbox.
	host *runtimeHost
}

// NewServer starts the terminal session manager, and the reaper when the
// agent is PID 1, where orphans are re-parented from the start. Close stops
// the sessions.
func NewServer(log *slog.Logger) *Server {
	s := &Server{log: log, baseEnv: baseEnviron()}
	s.ptys = newPtyManager(s)
	s.watches = newWatchHub()
	share := logBudgetOf(cgroupMemoryLimit())
	s.procs, s.listBudget = newProcs(share), share
	if os.Getpid() == 1 {
		processReaper()
	}
	return s
}

// children returns the reaper, starting it on first use (a process that
// never starts a child, an agent serving only pings and file reads, never
// takes over SIGCHLD), or nil once the server is closed.
func (s *Server) children() *reaper {
	if s.closed.Load() {
		return nil
	}
	return processReaper()
}

// Close kills the server's processes and terminal sessions; it starts no
// more.
func (s *Server) Close() {
	s.closed.Store(true)
	if s.host != nil {
		s.host.kill()
	}
	s.watches.close()
	s.ptys.close()
	s.procs.killAll()
}

// ServeSession handles the streams bothy opens on sess until the session ends
// or ctx is done, then waits for every stream's handler to return.
func (s *Server) ServeSession(ctx context.Context, sess *yamux.Session) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	// When the session ends, so do its streams' handlers: their context is
	// done, and every read or write on their streams fails at once.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	flows := map[*wire.Flow]bool{}
	ended := false
	go func() {
		select {
		case <-sess.CloseChan():
		case <-sctx.Done():
		}
		cancel()
		mu.Lock()
		ended = true
		for fc := range flows {
			fc.Kill()
		}
		mu.Unlock()
	}()
	for {
		st, err := sess.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, io.EOF) || sess.IsClosed() {
				return ctx.Err()
			}
			return err
		}
		fc := wire.NewFlow(st, nil)
		mu.Lock()
		if ended {
			fc.Kill()
		}
		flows[fc] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				fc.Close()
				mu.Lock()
				delete(flows, fc)
				mu.Unlock()
			}()
			s.handle(sctx, fc)
		}()
	}
}

func (s *Server) handle(ctx context.Context, st net.Conn) {
	var req wire.Request
	if err := wire.ReadJSON(st, &req); err != nil {
		s.log.Debug("bad request frame", "err", err)
		return
	}
	out := wire.NewFrameSender(st)
	switch req.Op {
	case "ping":
		_ = out.SendJSON(wire.Pong{PID: os.Getpid()})
	case "disk":
		_ = out.SendJSON(probeDisk())
	case "stats":
		_ = out.SendJSON(cgroupStats())
	case "cpu":
		n, err := processesCPU()
		u := wire.CPUUsage{UsageNs: n}
		if err != nil {
			u.Error = err.Error()
		}
		_ = out.SendJSON(u)
	case "user":
		id, err := lookupUser(req.User)
		info := wire.UserInfo{UID: id.uid, GID: id.gid, Home: id.home}
		if err != nil {
			info = wire.UserInfo{Error: err.Error()}
		}
		_ = out.SendJSON(info)
	case "pty_attach":
		s.ptys.serveAttach(ctx, st, out, req.Pty)
	case "fs":
		s.serveFS(st, out, req.Fs)
	case "watch":
		s.serveWatch(ctx, st, out, req.Watch)
	case "port_dial":
		s.servePortDial(ctx, st, out, req.Port)
	case "capture":
		s.serveCapture(ctx, st, out, req.Capture)
	case "proc_start":
		_ = out.SendJSON(s.startProc(req.ProcStart))
	case "proc_logs":
		s.serveProcLogs(ctx, st, out, req.Proc)
	case "proc_list", "proc_get", "proc_signal", "proc_kill", "proc_stdin", "proc_wait":
		_ = out.SendJSON(s.serveProc(ctx, req.Op, req.Proc))
	case "pty_list":
		_ = out.SendJSON(wire.PtyList{Sessions: s.ptys.list()})
	case "pty_kill":
		var res wire.OpResult
		if err := s.ptys.remove(req.Session); err != nil {
			res.Code, res.Error = codeOf(err), err.Error()
		}
		_ = out.SendJSON(res)
	case "run":
		if req.Run == nil {
			_ = out.SendJSON(wire.RunResult{Error: "run request without run"})
			return
		}
		s.serveRun(ctx, st, out, req.Run)
	case "app_init":
		if req.AppInit == nil {
			_ = out.SendJSON(wire.OpResult{Error: "app_init request without app"})
			return
		}
		s.serveAppInit(out, req.AppInit)
	case "invoke":
		if req.Invoke == nil {
			_ = out.SendJSON(wire.OpResult{Error: "invoke request without request"})
			return
		}
		s.serveInvoke(ctx, st, out, req.Invoke)
	case "exec":
		if req.Exec == nil {
			_ = out.SendJSON(wire.ExecResult{ExitCode: 126, StartError: "exec request without exec"})
			return
		}
		res, wait := s.exec(ctx, st, out, req.Exec)
		_ = out.SendJSON(res)
		_ = st.SetReadDeadline(time.Now().Add(resultDrain))
		wait()
	default:
		_ = out.SendJSON(wire.ExecResult{ExitCode: 126, StartError: "unknown operation " + req.Op})
	}
}
