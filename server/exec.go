package server

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/orchestrator"
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
	line := func(typ string, b []byte) { _ = events.sendJSON(nil, typ, b) }
	stdout := newEventWriter(api.EventStdout, line)
	stderr := newEventWriter(api.EventStderr, line)
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

// eventWriter turns output into exec events (api.ExecEvent) of up to
// maxEvent bytes each, written by hand into a buffer it reuses, in base64
// where JSON would inflate the output more: a streamed command holds one
// small event, whatever it prints.
type eventWriter struct {
	typ  string
	send func(typ string, line []byte)
	buf  *[]byte
}

func newEventWriter(typ string, send func(string, []byte)) eventWriter {
	return eventWriter{typ: typ, send: send, buf: new([]byte)}
}

// maxEvent bounds the output one event carries.
const maxEvent = 16 << 10

func (w eventWriter) Write(p []byte) (int, error) {
	for b := p; len(b) > 0; {
		piece := b[:min(len(b), maxEvent)]
		b = b[len(piece):]
		line := append((*w.buf)[:0], `{"type":`...)
		line = strconv.AppendQuote(line, w.typ)
		line = append(line, `,"data":"`...)
		if api.OutputEncoding(piece) == api.EncodingBase64 {
			line = base64.StdEncoding.AppendEncode(line, piece)
			line = append(line, `","encoding":"base64"}`...)
		} else {
			line = appendJSONString(line, piece)
			line = append(line, `"}`...)
		}
		*w.buf = line
		w.send(w.typ, line)
	}
	return len(p), nil
}

func toExecResult(r orchestrator.ExecResult) api.ExecResult {
	return api.ExecResult{
		ExitCode: r.ExitCode, Signal: r.Signal, DurationMs: r.DurationMs, CPUMs: r.CPUMs,
		PeakMemoryKB: r.PeakMemoryKB, OOMKilled: r.OOMKilled, TimedOut: r.TimedOut,
		Truncated: r.Truncated, StartError: r.StartError,
	}
}
