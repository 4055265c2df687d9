package server

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/orchestrator"
)

const execAction = "exec"

// Limits of an exec over a WebSocket.
const (
	// maxStdinFrame bounds one binary frame of standard input.
	maxStdinFrame = 1 << 20
	// execWriteWait bounds the write of one event to a client that does not read.
	execWriteWait = time.Minute
)

// execSocket runs a command over a WebSocket, for standard input that is
// streamed while output streams back. The command is in the query (cmd,
// repeated, or shell; env=K=V, repeated; cwd, user, timeout_ms), checked
// before the upgrade. The client's binary frames are the command's stdin, a
// text frame {"type":"stdin_close"} ends it and {"type":"kill"} kills the
// command; the server sends the events of a streamed exec as text frames,
// the last an exit (or error) event, and then closes. The command is killed
// when the client goes away.
func (s *Server) execSocket(c *echo.Context) error {
	r := c.Request()
	id := c.Param("id")
	key, err := s.socketCaller(c, id, execAction)
	if err != nil {
		return err
	}
	opts, err := execQuery(r.URL.Query())
	if err != nil {
		return err
	}
	if err := opts.Validate(); err != nil {
		return err
	}
	ws, err := upgrader.Upgrade(c.Response(), r, nil)
	if err != nil {
		return nil // the upgrader answered the client
	}
	defer ws.Close()
	ws.SetReadLimit(maxStdinFrame)
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(s.life, cancel)()

	var mu sync.Mutex // one writer at a time
	line := func(_ string, b []byte) {
		mu.Lock()
		defer mu.Unlock()
		_ = ws.SetWriteDeadline(time.Now().Add(execWriteWait))
		if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
			cancel()
		}
	}
	emit := func(ev api.ExecEvent) {
		b, _ := json.Marshal(ev)
		line(ev.Type, b)
	}
	stdin := &socketStdin{ws: ws, cancel: cancel}
	res, err := s.deps.Orchestrator.Exec(ctx, key.ID, id, opts, stdin,
		newEventWriter(api.EventStdout, line), newEventWriter(api.EventStderr, line))
	// The reading of the socket ends now.
	_ = ws.SetReadDeadline(time.Now())
	if err != nil {
		_, code, msg := classify(err)
		rid, _ := c.Get(ctxRequestID).(string)
		emit(api.ExecEvent{Type: api.EventError, Error: &api.Error{Code: code, Message: msg, RequestID: rid}})
	} else {
		out := toExecResult(res)
		emit(api.ExecEvent{Type: api.EventExit, Result: &out})
	}
	mu.Lock()
	_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	mu.Unlock()
	return nil
}

// socketStdin is the command's stdin, read from the client's frames: a
// binary frame's bytes, until a {"type":"stdin_close"} (orchestrator.ErrStdinEnded;
// frames after it are dropped); a {"type":"kill"}, or the client going
// away, kills the command (cancel). The exec reads it on its own
// goroutine, which is the socket's only reader.
type socketStdin struct {
	ws     *websocket.Conn
	cancel context.CancelFunc
	left   []byte
}

func (s *socketStdin) Read(p []byte) (int, error) {
	for len(s.left) == 0 {
		kind, data, err := s.ws.ReadMessage()
		if err != nil {
			s.cancel()
			return 0, err
		}
		if kind == websocket.BinaryMessage {
			s.left = data
			continue
		}
		var msg struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(data, &msg)
		switch msg.Type {
		case "stdin_close":
			return 0, orchestrator.ErrStdinEnded
		case "kill":
			s.cancel()
			return 0, context.Canceled
		}
	}
	n := copy(p, s.left)
	s.left = s.left[n:]
	return n, nil
}

// execQuery reads an exec's options from the query of an exec WebSocket.
func execQuery(q url.Values) (orchestrator.ExecOptions, error) {
	opts := orchestrator.ExecOptions{Argv: q["cmd"], Shell: q.Get("shell"), Cwd: q.Get("cwd"), User: q.Get("user"),
		Timeout: defaultExecTimeout}
	for _, kv := range q["env"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return opts, badRequest("env: want NAME=VALUE, got " + strconv.Quote(kv))
		}
		if opts.Env == nil {
			opts.Env = map[string]string{}
		}
		opts.Env[k] = v
	}
	if v := q.Get("timeout_ms"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return opts, badRequest("timeout_ms: want a number of milliseconds, got " + strconv.Quote(v))
		}
		if ms > 0 {
			opts.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	return opts, nil
}
