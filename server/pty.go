package server

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/shell"
	"github.com/bothy/bothy/supervisor"
)

const ptyAction = "pty"

// upgrader makes the server's WebSockets. They read through the HTTP
// server's own 4 KiB buffer, and write through a small one lent by a pool
// for each message only: a socket whose client stops reading pins one.
var upgrader = websocket.Upgrader{
	WriteBufferSize: 4 << 10,
	WriteBufferPool: &sync.Pool{},
	// The origin is checked before the upgrade, by socketAuth, so that a
	// refusal gets the JSON error envelope.
	CheckOrigin: func(*http.Request) bool { return true },
}

// ptySocket opens a terminal over a WebSocket: a new session, or ?session= to
// reattach to one (replaying its recent output unless ?replay=false).
func (s *Server) ptySocket(c *echo.Context) error {
	r := c.Request()
	id := c.Param("id")
	key, err := s.socketCaller(c, id, ptyAction)
	if err != nil {
		return err
	}
	req, err := ptyRequest(r.URL.Query())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()
	upgraded, err := s.deps.Shell.Serve(ctx, key.ID, id, req, func() (*websocket.Conn, error) {
		return upgrader.Upgrade(c.Response(), r, nil)
	})
	if upgraded {
		return nil // the connection is the WebSocket's now; errors were logged
	}
	return err
}

// ptyRequest reads the terminal options from the query.
func ptyRequest(q url.Values) (shell.Request, error) {
	size := func(name string, def uint16) (uint16, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return 0, badRequest(name + ": want 1 to 1000")
		}
		return uint16(n), nil
	}
	cols, err := size("cols", 80)
	if err != nil {
		return shell.Request{}, err
	}
	rows, err := size("rows", 24)
	if err != nil {
		return shell.Request{}, err
	}
	if sess := q.Get("session"); sess != "" {
		return shell.Request{Session: sess, Replay: q.Get("replay") != "false"}, nil
	}
	cwd := q.Get("cwd")
	if cwd != "" && !path.IsAbs(cwd) {
		return shell.Request{}, badRequest("cwd: must be an absolute path")
	}
	for _, a := range q["cmd"] {
		if a == "" || strings.ContainsRune(a, 0) {
			return shell.Request{}, badRequest("cmd: empty argument or NUL byte")
		}
	}
	var env map[string]string
	for _, kv := range q["env"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, "\x00 ") || strings.ContainsRune(v, 0) {
			return shell.Request{}, badRequest("env: want NAME=VALUE, got " + strconv.Quote(kv))
		}
		if env == nil {
			env = map[string]string{}
		}
		env[k] = v
	}
	var idle time.Duration
	if v := q.Get("idle_timeout_s"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 || n > 7*24*3600 {
			return shell.Request{}, badRequest("idle_timeout_s: want 1 to 604800")
		}
		idle = time.Duration(n) * time.Second
	}
	return shell.Request{
		Argv: q["cmd"], Env: env, Cols: cols, Rows: rows, Cwd: cwd, User: q.Get("user"), IdleTimeout: idle,
	}, nil
}

// socketCaller admits a WebSocket request before its upgrade: its key
// (socketAuth), the key's own sandbox id, and an upgrade asked for.
func (s *Server) socketCaller(c *echo.Context, id, action string) (supervisor.Key, error) {
	key, err := s.socketAuth(c, id, action)
	if err != nil {
		return supervisor.Key{}, err
	}
	// A socket counts against its key's cap like any request.
	if err := bounds.From(c.Request().Context()).Key(key.ID); err != nil {
		return supervisor.Key{}, err
	}
	if _, err := s.deps.Orchestrator.Get(c.Request().Context(), key.ID, id); err != nil {
		return supervisor.Key{}, err
	}
	if !websocket.IsWebSocketUpgrade(c.Request()) {
		return supervisor.Key{}, badRequest("this route needs a WebSocket upgrade")
	}
	return key, nil
}

// socketAuth authenticates a WebSocket request: by bearer key (any client that
// can set headers), or by a single-use ticket, which is accepted only from an
// allowed Origin (browsers always send one). A request that carries an Origin
// must come from an allowed one either way.
func (s *Server) socketAuth(c *echo.Context, sandboxID, action string) (supervisor.Key, error) {
	r := c.Request()
	origin := r.Header.Get("Origin")
	// A ticket is spent by any attempt to use it, refused or not.
	var tk supervisor.Ticket
	var tkErr error
	ticket := r.URL.Query().Get("ticket")
	if ticket != "" {
		tk, tkErr = s.tickets.Redeem(ticket, sandboxID, action)
	}
	if origin != "" && !s.originAllowed(origin, r.Host) {
		return supervisor.Key{}, newError(http.StatusForbidden, api.CodeForbidden, "origin "+origin+" is not allowed")
	}
	if h := r.Header.Get("Authorization"); h != "" {
		key, err := s.keyOf(r)
		if err == nil {
			c.Set(ctxKey, key)
		}
		return key, err
	}
	if ticket == "" {
		return supervisor.Key{}, newError(http.StatusUnauthorized, api.CodeUnauthenticated, "missing credentials: send Authorization: Bearer KEY, or ?ticket= from POST /v1/sandboxes/{id}/pty/tickets")
	}
	if origin == "" {
		return supervisor.Key{}, newError(http.StatusForbidden, api.CodeForbidden, "a ticket is accepted only with an Origin header")
	}
	if tkErr != nil {
		return supervisor.Key{}, newError(http.StatusUnauthorized, api.CodeUnauthenticated, tkErr.Error())
	}
	key, err := s.deps.Keys.Get(r.Context(), tk.KeyID)
	if err != nil {
		return supervisor.Key{}, newError(http.StatusUnauthorized, api.CodeUnauthenticated, "the key that issued this ticket is revoked")
	}
	c.Set(ctxKey, key)
	return key, nil
}

// originAllowed admits the configured origins, and the server's own origin
// when it is named by an IP address or "localhost": a page can only have
// such an origin if it was loaded from that very address and port. A DNS
// name in the request's Host proves nothing (a DNS-rebinding page sends
// matching Host and Origin), so a deployment reached by name lists its origin
// in AllowedOrigins.
func (s *Server) originAllowed(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	name := u.Hostname()
	literal := net.ParseIP(name) != nil || strings.EqualFold(name, "localhost")
	if literal && strings.EqualFold(u.Host, host) && (u.Scheme == "http" || u.Scheme == "https") {
		return true
	}
	for _, o := range s.cfg.AllowedOrigins {
		if strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}

// ptyTicket issues a ticket for the caller to open a terminal on a sandbox of
// its own.
func (s *Server) ptyTicket(c *echo.Context) error {
	id := c.Param("id")
	key := caller(c)
	if _, err := s.deps.Orchestrator.Get(c.Request().Context(), key.ID, id); err != nil {
		return err
	}
	secret, tk := s.tickets.Issue(key.ID, id, ptyAction)
	return c.JSON(http.StatusCreated, api.Ticket{Ticket: secret, ExpiresAt: tk.ExpiresAt.UTC()})
}

func (s *Server) listPtySessions(c *echo.Context) error {
	list, err := s.deps.Shell.List(c.Request().Context(), caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	out := api.PtySessionList{Sessions: make([]api.PtySession, 0, len(list))}
	for _, p := range list {
		out.Sessions = append(out.Sessions, api.PtySession{
			ID: p.ID, Argv: p.Argv, PID: p.PID, Cols: p.Cols, Rows: p.Rows, CreatedAt: p.CreatedAt.UTC(),
			Viewers: p.Viewers, Exited: p.Exited, ExitCode: p.ExitCode,
		})
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) killPtySession(c *echo.Context) error {
	if err := s.deps.Shell.Kill(c.Request().Context(), caller(c).ID, c.Param("id"), c.Param("session")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
