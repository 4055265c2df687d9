// Package shell is the host side of interactive terminal sessions: it opens,
// reattaches to, lists and ends them through the orchestrator (Service), and
// carries one over a WebSocket (Bridge). The sessions themselves live in each
// sandbox's agent, so they outlive connections and sandboxd restarts.
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

	"github.com/gorilla/websocket"

	"github.com/sandboxd/sandboxd/agent"
	"github.com/sandboxd/sandboxd/api"
)

// Connection limits.
const (
	writeWait  = 10 * time.Second
	pongWait   = 45 * time.Second
	pingEvery  = 15 * time.Second
	MaxMessage = 64 << 10 // largest message a client may send
	sendQueue  = 64
	coalesce   = 256 << 10 // most output bytes one message carries
)

// queueClosed marks, in the writer, that the send queue closed while it was
// batching output.
const queueClosed = -1

type outgoing struct {
	kind int
	data []byte
}

// Bridge serves ws as a viewer of stream until the session's process exits (the
// exit is returned), the client goes away (a detach: nil, nil), or ctx is done.
// It runs one reader (the calling goroutine), one writer and one pump from the
// agent, and joins them all before returning.
func Bridge(ctx context.Context, ws *websocket.Conn, stream *agent.PtyStream, log *slog.Logger) (*agent.PtyExit, error) {
	queue := make(chan outgoing, sendQueue)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var exit *agent.PtyExit
	var pumpErr error

	hello, _ := json.Marshal(api.PtyMessage{Type: "session", ID: stream.Info.ID, PID: stream.Info.PID, Argv: stream.Info.Argv,
		Cols: stream.Info.Cols, Rows: stream.Info.Rows})
	queue <- outgoing{websocket.TextMessage, hello}

	// The pump: agent output to the send queue, which it owns and closes.
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(queue)
		send := func(o outgoing) bool {
			select {
			case queue <- o:
				return true
			case <-done:
				return false
			}
		}
		for {
			b, e, err := stream.Next()
			if err != nil {
				// The agent ended this viewer (it lagged too far) or the
				// channel broke: the session goes on and can be reattached.
				pumpErr = err
				send(outgoing{websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseTryAgainLater, "terminal stream ended; reattach to continue")})
				return
			}
			if e != nil {
				exit = e
				code := e.ExitCode
				msg, _ := json.Marshal(api.PtyMessage{Type: "exit", ExitCode: &code, Signal: e.Signal})
				if send(outgoing{websocket.TextMessage, msg}) {
					send(outgoing{websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, fmt.Sprintf("exit %d", code))})
				}
				return
			}
			if !send(outgoing{websocket.BinaryMessage, b}) {
				return
			}
		}
	}()

	// The writer: the only goroutine that writes to ws, pings included.
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(pingEvery)
		defer t.Stop()
		var held *outgoing // a message taken from the queue while batching
		batch := make([]byte, 0, coalesce)
		for {
			var o outgoing
			ok := true
			if held != nil {
				o, held = *held, nil
			} else {
				select {
				case o, ok = <-queue:
				case <-t.C:
					if err := ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
						_ = ws.SetReadDeadline(time.Now())
						return
					}
					continue
				}
			}
			if !ok {
				// Nothing more to send: give the client a moment to
				// close, then stop the reader.
				_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
				return
			}
			if o.kind == websocket.BinaryMessage {
				// Output that queued up meanwhile goes in the same message.
				batch = append(batch[:0], o.data...)
			more:
				for len(batch) < coalesce {
					select {
					case n, ok := <-queue:
						if !ok || n.kind != websocket.BinaryMessage {
							if ok {
								held = &n
							} else {
								held = &outgoing{kind: queueClosed}
							}
							break more
						}
						batch = append(batch, n.data...)
					default:
						break more
					}
				}
				o.data = batch
			}
			if o.kind == queueClosed { // the queue closed while batching
				_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
				return
			}
			_ = ws.SetWriteDeadline(time.Now().Add(writeWait))
			if err := ws.WriteMessage(o.kind, o.data); err != nil {
				_ = ws.SetReadDeadline(time.Now())
				return
			}
		}
	}()

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
		return stream.Control(agent.PtyControl{Type: "resize", Cols: m.Cols, Rows: m.Rows})
	case "signal":
		return stream.Control(agent.PtyControl{Type: "signal", Signal: m.Signal})
	}
	return nil
}
