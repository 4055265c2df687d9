package shell

import (
	"context"
	"strconv"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/orchestrator"
)

// Exit is how a session's process ended.
type Exit struct {
	ExitCode int
	// Signal names the signal that killed it, if one did.
	Signal string
}

// Viewer is one viewer of a session, for front doors that carry it over
// something else than a WebSocket (E2B's PTY RPCs).
type Viewer struct {
	stream *agent.PtyStream
	// Session describes the session viewed.
	Session Info
}

// Next returns the next chunk of output, or the exit when the session's
// process ended (the view is then over).
func (v *Viewer) Next() ([]byte, *Exit, error) {
	b, e, err := v.stream.Next()
	if e != nil {
		return nil, &Exit{ExitCode: e.ExitCode, Signal: e.Signal}, nil
	}
	return b, nil, err
}

// View opens (or reattaches to) a session in owner's sandbox id and calls fn
// with a viewer of it; when fn returns the viewer leaves, and the session
// goes on.
func (s *Service) View(ctx context.Context, owner, id string, req Request, fn func(v *Viewer) error) error {
	return s.sandboxes.Attach(ctx, owner, id, func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error {
		stream, err := conn.PtyAttach(ctx, s.attachOf(sb, req))
		if err != nil {
			return ptyErr(err, id, req.Session)
		}
		defer stream.Close()
		stop := context.AfterFunc(ctx, func() { stream.Close() })
		defer stop()
		return fn(&Viewer{stream: stream, Session: infoOf(stream.Info)})
	})
}

// attachOf is the agent's request for req, with the sandbox's user and
// workdir for a new session that names none.
func (s *Service) attachOf(sb orchestrator.Sandbox, req Request) wire.PtyAttach {
	at := wire.PtyAttach{Session: req.Session, Replay: req.Replay}
	if req.Session == "" {
		at.Open = &wire.PtyOpen{Argv: req.Argv, Env: sb.CommandEnv(req.Env), Cwd: req.Cwd, User: req.User,
			Cols: req.Cols, Rows: req.Rows, IdleTimeoutMs: req.IdleTimeout.Milliseconds()}
		if at.Open.User == "" {
			at.Open.User = sb.Spec.User
		}
		if at.Open.Cwd == "" {
			at.Open.Cwd = sb.Spec.Workdir
		}
	}
	return at
}

// Input sends keystrokes to session of owner's sandbox id.
func (s *Service) Input(ctx context.Context, owner, id, session string, data []byte) error {
	return s.View(ctx, owner, id, Request{Session: session}, func(v *Viewer) error { return v.stream.Input(data) })
}

// Resize sets the size of session's terminal in owner's sandbox id.
func (s *Service) Resize(ctx context.Context, owner, id, session string, cols, rows uint16) error {
	if cols == 0 || rows == 0 || cols > 1000 || rows > 1000 {
		return cerrdefs.ErrInvalidArgument.WithMessage("terminal size: want 1 to 1000 columns and rows")
	}
	return s.View(ctx, owner, id, Request{Session: session}, func(v *Viewer) error {
		return v.stream.Control(wire.PtyControl{Type: "resize", Cols: cols, Rows: rows})
	})
}

// ByPID finds the live session whose process is pid in owner's sandbox id.
func (s *Service) ByPID(ctx context.Context, owner, id string, pid int) (Info, error) {
	list, err := s.List(ctx, owner, id)
	if err != nil {
		return Info{}, err
	}
	for _, info := range list {
		if info.PID == pid && !info.Exited {
			return info, nil
		}
	}
	return Info{}, cerrdefs.ErrNotFound.WithMessage("no terminal session runs process " + strconv.Itoa(pid) + " in sandbox " + id)
}
