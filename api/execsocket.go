package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gorilla/websocket"
)

// ExecSocketURL is the WebSocket URL of an exec of req in sandbox id
// (req.Stdin and req.MaxOutputBytes do not apply there).
func (c *Client) ExecSocketURL(id string, req ExecRequest) string {
	q := url.Values{}
	for _, a := range req.Cmd {
		q.Add("cmd", a)
	}
	if req.Shell != "" {
		q.Set("shell", req.Shell)
	}
	for k, v := range req.Env {
		q.Add("env", k+"="+v)
	}
	if req.Cwd != "" {
		q.Set("cwd", req.Cwd)
	}
	if req.User != "" {
		q.Set("user", req.User)
	}
	if req.TimeoutMs > 0 {
		q.Set("timeout_ms", strconv.FormatInt(req.TimeoutMs, 10))
	}
	return strings.Replace(c.base, "http", "ws", 1) + "/v1/sandboxes/" + url.PathEscape(id) + "/exec?" + q.Encode()
}

// ExecSocket runs a command over a WebSocket, streaming stdin to it until
// stdin returns io.EOF (then the command's stdin is closed) while its output
// is written to stdout and stderr as it arrives. Cancelling ctx kills the
// command. A non-zero exit is a result, not an error. The goroutine that
// reads stdin ends when a read of it returns after the call has.
func (c *Client) ExecSocket(ctx context.Context, id string, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (ExecResult, error) {
	hdr := http.Header{}
	if c.key != "" {
		hdr.Set("Authorization", "Bearer "+c.key)
	}
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, c.ExecSocketURL(id, req), hdr)
	if err != nil {
		if resp != nil {
			defer resp.Body.Close()
			return ExecResult{}, decodeError(resp)
		}
		return ExecResult{}, err
	}
	defer ws.Close()
	stop := context.AfterFunc(ctx, func() { _ = ws.Close() })
	defer stop()
	// The one writer: stdin, then its end.
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := stdin.Read(buf)
			if n > 0 && ws.WriteMessage(websocket.BinaryMessage, buf[:n]) != nil {
				return
			}
			if errors.Is(err, io.EOF) {
				_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"stdin_close"}`))
				return
			}
			if err != nil {
				_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"kill"}`))
				return
			}
		}
	}()
	for {
		var ev ExecEvent
		kind, data, err := ws.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return ExecResult{}, ctx.Err()
			}
			return ExecResult{}, fmt.Errorf("exec socket ended before the exit: %w", err)
		}
		if kind != websocket.TextMessage || json.Unmarshal(data, &ev) != nil {
			return ExecResult{}, errors.New("exec socket: not an event")
		}
		if res, done, err := ev.apply(stdout, stderr); done || err != nil {
			return res, err
		}
	}
}
