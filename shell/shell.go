// Package shell is the host side of interactive terminal sessions: it opens,
// reattaches to, lists and ends them through the orchestrator (Service), and
// carries one over a WebSocket (Bridge). The sessions themselves live in each
// sandbox's agent, so they outlive connections and bothy restarts.
//
// Framing: binary frames carry terminal bytes both ways. Text frames carry JSON
// control messages (api.PtyMessage): from the client "resize" and "signal";
// from the server "session" (first, naming the session to reattach to) and
// "exit" (last, with the exit code), followed by a normal close whose reason is
// "exit N".
package shell

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bothy/bothy/agent/wire"

	"github.com/gorilla/websocket"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/api"
)

// Connection limits.
const (
	writeWait  = 10 * time.Second
	pongWait   = 45 * time.Second
	pingEvery  = 15 * time.Second
	MaxMessage = 64 << 10 // largest message a client may send
)

// Bridge serves ws as a viewer of stream until the session's process exits (the
// exit is returned), the client goes away (a detach: nil, nil), or ctx is done.
// It runs one reader (the calling goroutine), one writer, which takes the
// agent's output a small piece at a time and writes each as a message (so a
// client that stops reading holds one piece, and the agent, whose stream is
// flow-controlled, drops a viewer that lags too far), and a pinger's timer;
// it joins the writer before returning.
func Bridge(ctx context.Context, ws *websocket.Conn, stream *agent.PtyStream, log *slog.Logger) (*wire.PtyExit, error) {
	var wg sync.WaitGroup
	var exit *wire.PtyExit
	var pumpErr error
	done := make(chan struct{})

	write := func(kind int, data []byte) error {
		_ = ws.SetWriteDeadline(time.Now().Add(writeWait))
		return ws.WriteMessage(kind, data)
	}
	closeWith := func(code int, reason string) {
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(writeWait))
	}

	// The writer: agent output to the client, then the exit.
	wg.Add(1)
	go func() {
		defer wg.Done()
		// However it ends, the reader stops soon after: at once when the
		// client is gone, after a moment for the client to close otherwise.
		gone := false
		defer func() {
			if gone {
				_ = ws.SetReadDeadline(time.Now())
			} else {
				_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			}
		}()
		hello, _ := json.Marshal(api.PtyMessage{Type: "session", ID: stream.Info.ID, PID: stream.Info.PID, Argv: stream.Info.Argv,
			Cols: stream.Info.Cols, Rows: stream.Info.Rows})
		if err := write(websocket.TextMessage, hello); err != nil {
			gone = true
			return
		}
		for {
			b, e, err := stream.Next()
			if err != nil {
				// The agent ended this viewer (it lagged too far) or the
				// channel broke: the session goes on and can be reattached.
				select {
				case <-done:
				default:
					pumpErr = err
					closeWith(websocket.CloseTryAgainLater, "terminal stream ended; reattach to continue")
				}
				return
			}
			if e != nil {
				exit = e
				code := e.ExitCode
				msg, _ := json.Marshal(api.PtyMessage{Type: "exit", ExitCode: &code, Signal: e.Signal})
				if write(websocket.TextMessage, msg) == nil {
					closeWith(websocket.CloseNormalClosure, fmt.Sprintf("exit %d", code))
				}
				return
			}
			if err := write(websocket.BinaryMessage, b); err != nil {
				gone = true
				return
			}
		}
	}()

	// The pinger, a timer (no goroutine waits on it): control frames may go
	// beside the writer's messages.
	var ping *time.Timer
	ping = time.AfterFunc(pingEvery, func() {
		if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
			_ = ws.SetReadDeadline(time.Now())
			return
		}
		select {
		case <-done:
		default:
			ping.Reset(pingEvery)
		}
	})
	defer ping.Stop()

	stop := context.AfterFunc(ctx, func() {
		stream.Close()
		_ = ws.SetReadDeadline(time.Now())
	})
	defer stop()

	// The reader: keystrokes and control from the client.
	ws.SetReadLimit(MaxMessage)
	_ = ws.SetReadDeadline(time.Now().Add(pongWait))
	ws.SetPongHandler(func(string) error { return ws.SetReadDeadline(time.Now().Add(pongWait)) })
	for {
		kind, data, err := ws.ReadMessage()
		if err != nil {
			break
		}
		_ = ws.SetReadDeadline(time.Now().Add(pongWait))
		switch kind {
		case websocket.BinaryMessage:
			err = stream.Input(data)
		case websocket.TextMessage:
			err = control(stream, data)
		}
		if err != nil {
			log.Debug("terminal input", "err", err)
			break
		}
	}
	close(done)
	stream.Close() // detach: the session goes on in the agent
	wg.Wait()
	if exit != nil {
		return exit, nil
	}
	if pumpErr != nil && !errors.Is(pumpErr, context.Canceled) && ctx.Err() == nil {
		log.Debug("terminal stream ended", "err", pumpErr)
	}
	return nil, ctx.Err()
}

// control forwards one JSON control message; unknown ones are ignored.
func control(stream *agent.PtyStream, data []byte) error {
	var m api.PtyMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil
	}
	switch m.Type {
	case "resize":
		if m.Cols == 0 || m.Rows == 0 || m.Cols > 1000 || m.Rows > 1000 {
			return nil
		}
		return stream.Control(wire.PtyControl{Type: "resize", Cols: m.Cols, Rows: m.Rows})
	case "signal":
		return stream.Control(wire.PtyControl{Type: "signal", Signal: m.Signal})
	}
	return nil
}
