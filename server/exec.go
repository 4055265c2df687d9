package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/orchestrator"
)

// defaultExecTimeout applies when a request names none.
const defaultExecTimeout = 10 * time.Minute

func (s *Server) exec(c *echo.Context) error {
	var req api.ExecRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	opts := orchestrator.ExecOptions{
		Argv: req.Cmd, Shell: req.Shell, Env: req.Env, Cwd: req.Cwd, User: req.User,
		Stdin: []byte(req.Stdin), Timeout: time.Duration(req.TimeoutMs) * time.Millisecond,
	}
	if req.TimeoutMs < 0 {
		return badRequest("timeout_ms: must not be negative")
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultExecTimeout
	}
	if strings.Contains(c.Request().Header.Get("Accept"), "application/x-ndjson") {
		return s.execStream(c, opts)
	}
	opts.MaxOutput = req.MaxOutputBytes
	if opts.MaxOutput == 0 {
		opts.MaxOutput = orchestrator.DefaultMaxOutput
	}
	// The agent caps output; these buffers cap it again, since the agent is
	// not trusted.
	// The caps come out of the server's output budget; the agent gets what
	// was granted.
	if opts.MaxOutput < 0 || opts.MaxOutput > orchestrator.MaxOutputCap {
		return badRequest(fmt.Sprintf("max_output_bytes: must be between 0 and %d", orchestrator.MaxOutputCap))
	}
	granted, err := reserveOutput(c.Request().Context(), opts.MaxOutput)
	if err != nil {
		return err
	}
	opts.MaxOutput = granted
	stdout := &cappedBuffer{limit: granted}
	stderr := &cappedBuffer{limit: granted}
	res, err := s.deps.Orchestrator.Exec(c.Request().Context(), caller(c).ID, c.Param("id"), opts, nil, stdout, stderr)
	if err != nil {
		return err
	}
	out := toExecResult(res)
	out.Truncated = out.Truncated || stdout.truncated || stderr.truncated
	// The agent flags what passed a cap that the budget cut; the client
	// asked for more, so it is told.
	so, se := stdout.Bytes(), stderr.Bytes()
	out.StdoutEncoding, out.StderrEncoding = api.OutputEncoding(so), api.OutputEncoding(se)
	return writeWithOutputs(c, http.StatusOK, out,
		outputField{"stdout", so, out.StdoutEncoding}, outputField{"stderr", se, out.StderrEncoding})
}

// execStream answers with one NDJSON event per chunk of output, then the result.
func (s *Server) execStream(c *echo.Context, opts orchestrator.ExecOptions) error {
	events := &eventStream{w: c.Response()} // NDJSON: the client asked for it
	emit := func(ev api.ExecEvent) { _ = events.send(nil, ev.Type, ev) }
	stdout := eventWriter{typ: api.EventStdout, emit: emit}
	stderr := eventWriter{typ: api.EventStderr, emit: emit}
	res, err := s.deps.Orchestrator.Exec(c.Request().Context(), caller(c).ID, c.Param("id"), opts, nil, stdout, stderr)
	if err != nil {
		if !events.begun() {
			return err // nothing sent yet: the ordinary error envelope
		}
		_, code, msg := classify(err)
		rid, _ := c.Get(ctxRequestID).(string)
		emit(api.ExecEvent{Type: api.EventError, Error: &api.Error{Code: code, Message: msg, RequestID: rid}})
		return nil
	}
	out := toExecResult(res)
	emit(api.ExecEvent{Type: api.EventExit, Result: &out})
	return nil
}

type eventWriter struct {
	typ  string
	emit func(api.ExecEvent)
}

// Write emits p as one event, in base64 where JSON would inflate it more.
func (w eventWriter) Write(p []byte) (int, error) {
	ev := api.ExecEvent{Type: w.typ, Encoding: api.OutputEncoding(p)}
	if ev.Encoding == api.EncodingBase64 {
		ev.Data = base64.StdEncoding.EncodeToString(p)
	} else {
		ev.Data = string(p)
	}
	w.emit(ev)
	return len(p), nil
}

func toExecResult(r orchestrator.ExecResult) api.ExecResult {
	return api.ExecResult{
		ExitCode: r.ExitCode, Signal: r.Signal, DurationMs: r.DurationMs, CPUMs: r.CPUMs,
		PeakMemoryKB: r.PeakMemoryKB, OOMKilled: r.OOMKilled, TimedOut: r.TimedOut,
		Truncated: r.Truncated, StartError: r.StartError,
	}
}
