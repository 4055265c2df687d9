package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
)

// PtyOptions open a terminal: a new session, or (Session set) an existing one.
type PtyOptions struct {
	Cmd        []string // empty: the user's login shell
	Env        map[string]string
	Cols, Rows uint16
	Cwd, User  string
	// IdleTimeoutS kills the session after this long with no viewer (default
	// 10 minutes).
	IdleTimeoutS int
	Session      string
	NoReplay     bool // on attach, skip the recent output
}

// PtyConn is a terminal WebSocket. Read returns output; Write sends keystrokes.
type PtyConn struct {
	ws      *websocket.Conn
	wmu     sync.Mutex
	Session PtyMessage // the server's "session" message
	exit    *PtyMessage
}

// PtyURL is the WebSocket URL of a sandbox's terminal endpoint.
func (c *Client) PtyURL(id string, o PtyOptions) string {
	q := url.Values{}
	for _, a := range o.Cmd {
		q.Add("cmd", a)
	}
	for k, v := range o.Env {
		q.Add("env", k+"="+v)
	}
	if o.IdleTimeoutS > 0 {
		q.Set("idle_timeout_s", strconv.Itoa(o.IdleTimeoutS))
	}
	if o.Cols > 0 {
		q.Set("cols", strconv.Itoa(int(o.Cols)))
	}
	if o.Rows > 0 {
		q.Set("rows", strconv.Itoa(int(o.Rows)))
	}
	if o.Cwd != "" {
		q.Set("cwd", o.Cwd)
	}
	if o.User != "" {
		q.Set("user", o.User)
	}
	if o.Session != "" {
		q.Set("session", o.Session)
	}
	if o.NoReplay {
		q.Set("replay", "false")
	}
	u := strings.Replace(c.base, "http", "ws", 1) + "/v1/sandboxes/" + url.PathEscape(id) + "/pty"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// DialPty opens a terminal in a sandbox with the client's key.
func (c *Client) DialPty(ctx context.Context, id string, o PtyOptions) (*PtyConn, error) {
	hdr := http.Header{}
	if c.key != "" {
		hdr.Set("Authorization", "Bearer "+c.key)
	}
	return DialPtyURL(ctx, c.PtyURL(id, o), hdr)
}

// DialPtyURL opens a terminal WebSocket at u with the given headers (a browser's
// would carry Origin and a ?ticket=).
func DialPtyURL(ctx context.Context, u string, hdr http.Header) (*PtyConn, error) {
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, hdr)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			return nil, decodeError(resp)
		}
		return nil, err
	}
	p := &PtyConn{ws: ws}
	kind, data, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("read session message: %w", err)
	}
	if kind != websocket.TextMessage || json.Unmarshal(data, &p.Session) != nil || p.Session.Type != "session" {
		ws.Close()
		return nil, errors.New("terminal: the server did not name the session")
	}
	return p, nil
}

// ErrExited is returned by Read once the session's process has exited; Exit
// then reports the code.
var ErrExited = errors.New("terminal session exited")

// Read returns the next chunk of terminal output. It returns ErrExited after the
// exit message, and another error when the connection ends without one.
func (p *PtyConn) Read() ([]byte, error) {
	for {
		kind, data, err := p.ws.ReadMessage()
		if err != nil {
			if p.exit != nil {
				return nil, ErrExited
			}
			return nil, err
		}
		switch kind {
		case websocket.BinaryMessage:
			return data, nil
		case websocket.TextMessage:
			var m PtyMessage
			if json.Unmarshal(data, &m) == nil && m.Type == "exit" {
				p.exit = &m
			}
		}
	}
}

// Exit is the exit message, once Read has returned ErrExited.
func (p *PtyConn) Exit() (code int, signal string, ok bool) {
	if p.exit == nil || p.exit.ExitCode == nil {
		return 0, "", false
	}
	return *p.exit.ExitCode, p.exit.Signal, true
}

// Write sends keystrokes.
func (p *PtyConn) Write(b []byte) (int, error) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if err := p.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// Resize tells the terminal its new size.
func (p *PtyConn) Resize(cols, rows uint16) error {
	return p.sendJSON(PtyMessage{Type: "resize", Cols: cols, Rows: rows})
}

// Signal sends a signal (for example "SIGINT") to the session's processes.
func (p *PtyConn) Signal(sig string) error {
	return p.sendJSON(PtyMessage{Type: "signal", Signal: sig})
}

func (p *PtyConn) sendJSON(m PtyMessage) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p.wmu.Lock()
	defer p.wmu.Unlock()
	return p.ws.WriteMessage(websocket.TextMessage, b)
}

// Close detaches: the session goes on and can be reattached.
func (p *PtyConn) Close() error {
	p.wmu.Lock()
	_ = p.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "detach"))
	p.wmu.Unlock()
	return p.ws.Close()
}

// ListPtySessions lists a sandbox's terminal sessions.
func (c *Client) ListPtySessions(ctx context.Context, id string) (PtySessionList, error) {
	var out PtySessionList
	err := c.do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(id)+"/pty/sessions", nil, nil, &out)
	return out, err
}

// KillPtySession kills a terminal session and its whole process tree.
func (c *Client) KillPtySession(ctx context.Context, id, session string) error {
	return c.do(ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(id)+"/pty/sessions/"+url.PathEscape(session), nil, nil, nil)
}

// PtyTicket issues a single-use ticket for a browser to open a terminal
// WebSocket on the sandbox.
func (c *Client) PtyTicket(ctx context.Context, id string) (Ticket, error) {
	var out Ticket
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/pty/tickets", nil, nil, &out)
	return out, err
}
