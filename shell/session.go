package shell

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/gorilla/websocket"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/orchestrator"
)

// Sandboxes reaches a sandbox's agent: the orchestrator, which wakes a
// stopped sandbox, checks its owner and counts the call as activity.
type Sandboxes interface {
	Attach(ctx context.Context, owner, id string, fn func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error) error
}

// Service opens, lists and ends the terminal sessions of sandboxes.
type Service struct {
	sandboxes Sandboxes
	log       *slog.Logger
}

// New returns the terminal sessions over sandboxes.
func New(sandboxes Sandboxes, log *slog.Logger) *Service {
	return &Service{sandboxes: sandboxes, log: log}
}

// Request opens a new session, or reattaches to Session.
type Request struct {
	// Session reattaches to an existing session; Replay sends its recent
	// output first.
	Session string
	Replay  bool

	// The rest opens a new session: Argv (empty: the user's login shell) in
	// Cwd (empty: the sandbox's workdir) as User (empty: the sandbox's).
	Argv       []string
	Env        map[string]string
	Cwd        string
	User       string
	Cols, Rows uint16
	// IdleTimeout ends the session after this long with no viewer (0: the
	// agent's default).
	IdleTimeout time.Duration
}

// Info describes a session.
type Info struct {
	ID         string
	Argv       []string
	PID        int
	Cols, Rows uint16
	CreatedAt  time.Time
	Viewers    int
	Exited     bool
	ExitCode   int
}

// Serve opens (or reattaches to) a session in owner's sandbox id, then calls
// upgrade for the viewer's WebSocket and bridges the two until the session's
// process exits, the viewer leaves, or ctx is done. upgraded says upgrade
// was called and succeeded: the connection is the WebSocket's from then on,
// and a later error is only worth logging.
func (s *Service) Serve(ctx context.Context, owner, id string, req Request, upgrade func() (*websocket.Conn, error)) (upgraded bool, err error) {
	err = s.View(ctx, owner, id, req, func(v *Viewer) error {
		ws, err := upgrade()
		if err != nil {
			return nil // the upgrader has answered
		}
		upgraded = true
		defer ws.Close()
		_, err = Bridge(ctx, ws, v.stream, s.log.With("sandbox_id", id, "session", v.Session.ID))
		return err
	})
	return upgraded, err
}

// List describes the sessions of owner's sandbox id.
func (s *Service) List(ctx context.Context, owner, id string) ([]Info, error) {
	var out []Info
	err := s.sandboxes.Attach(ctx, owner, id, func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
		list, err := conn.PtyList(ctx)
		if err != nil {
			return err
		}
		out = make([]Info, 0, len(list))
		for _, p := range list {
			out = append(out, infoOf(p))
		}
		return nil
	})
	return out, err
}

func infoOf(p wire.PtyInfo) Info {
	return Info{ID: p.ID, Argv: p.Argv, PID: p.PID, Cols: p.Cols, Rows: p.Rows,
		CreatedAt: p.CreatedAt, Viewers: p.Viewers, Exited: p.Exited, ExitCode: p.ExitCode}
}

// killWait bounds how long a kill waits for the session's processes to go.
const killWait = 15 * time.Second

// Kill ends session in owner's sandbox id, and every process it started.
func (s *Service) Kill(ctx context.Context, owner, id, session string) error {
	return s.sandboxes.Attach(ctx, owner, id, func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
		ctx, cancel := context.WithTimeout(ctx, killWait)
		defer cancel()
		return ptyErr(conn.PtyKill(ctx, session), id, session)
	})
}

// ptyErr classifies the agent's refusals.
func ptyErr(err error, id, session string) error {
	var perr *agent.PtyError
	switch {
	case errors.Is(err, agent.ErrNoSession):
		return cerrdefs.ErrNotFound.WithMessage("no terminal session " + session + " in sandbox " + id)
	case errors.As(err, &perr):
		return cerrdefs.ErrInvalidArgument.WithMessage("terminal: " + perr.Msg)
	}
	return err
}
