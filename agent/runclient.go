package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/bothy/bothy/agent/wire"
)

// Run runs req in a runner. Output is written to stdout and stderr as it
// arrives. Cancelling ctx kills the run.
func (c *Conn) Run(ctx context.Context, req wire.RunRequest, stdout, stderr io.Writer) (wire.RunResult, error) {
	st, err := c.stream(ctx)
	if err != nil {
		return wire.RunResult{}, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() {
		st.Close()
		_ = st.SetReadDeadline(time.Now().Add(cancelGrace))
	})
	defer stop()
	if err := wire.WriteJSON(st, wire.Request{Op: "run", Run: &req}); err != nil {
		return wire.RunResult{}, fmt.Errorf("send run request: %w", err)
	}
	payload, err := readOutput(ctx, st, "run", stdout, stderr)
	if err != nil {
		return wire.RunResult{}, err
	}
	var res wire.RunResult
	err = wire.DecodeFrame(payload, &res)
	return res, err
}

// AppInit loads an app into a runner. An app that fails to load is an error
// whose message is the app's own.
func (c *Conn) AppInit(ctx context.Context, req wire.AppInit) error {
	var res wire.OpResult
	if err := c.call(ctx, wire.Request{Op: "app_init", AppInit: &req}, &res); err != nil {
		return err
	}
	if res.Error != "" {
		return &AppError{Msg: res.Error}
	}
	return nil
}

// AppError is an app that would not load.
type AppError struct{ Msg string }

func (e *AppError) Error() string { return e.Msg }

// Invoke hands one request to the app loaded in a runner. Every message the
// app's host sends before its answer is passed to onCall, whose reply goes
// back to the host. Invoke returns the host's last message: op "response" or
// "error".
func (c *Conn) Invoke(ctx context.Context, req wire.InvokeRequest, onCall func([]byte) []byte) ([]byte, error) {
	st, err := c.stream(ctx)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	out := wire.NewFrameSender(st)
	if err := out.SendJSON(wire.Request{Op: "invoke", Invoke: &req}); err != nil {
		return nil, fmt.Errorf("send invoke request: %w", err)
	}
	for {
		typ, payload, err := wire.ReadFrame(st)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("read invoke stream: %w", err)
		}
		if typ != wire.FrameJSON {
			return nil, fmt.Errorf("agent: unexpected frame %q", typ)
		}
		var m struct {
			Op string `json:"op"`
		}
		if err := json.Unmarshal(payload, &m); err != nil {
			return nil, fmt.Errorf("agent: decode frame: %w", err)
		}
		if m.Op == "response" || m.Op == "error" {
			return payload, nil
		}
		if reply := onCall(payload); reply != nil {
			if err := out.Send(wire.FrameJSON, reply); err != nil {
				return nil, fmt.Errorf("send to app: %w", err)
			}
		}
	}
}
