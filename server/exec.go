package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v5"

	"github.com/sandboxd/sandboxd/agent"
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
	stdout := &cappedBuffer{limit: opts.MaxOutput}
	stderr := &cappedBuffer{limit: opts.MaxOutput}
	res, err := s.deps.Orchestrator.Exec(c.Request().Context(), caller(c).ID, c.Param("id"), opts, nil, stdout, stderr)
	if err != nil {
		return err
	}
	out := toExecResult(res)
	out.Stdout, out.Stderr = stdout.String(), stderr.String()
	out.Truncated = out.Truncated || stdout.truncated || stderr.truncated
	return c.JSON(http.StatusOK, out)
}

// execStream answers with one NDJSON event per chunk of output, then the result.
func (s *Server) execStream(c *echo.Context, opts orchestrator.ExecOptions) error {
	w := c.Response()
	var mu sync.Mutex
	started := false
	enc := json.NewEncoder(w)
	emit := func(ev api.ExecEvent) {
		mu.Lock()
		defer mu.Unlock()
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		_ = enc.Encode(ev)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	stdout := eventWriter{typ: api.EventStdout, emit: emit}
	stderr := eventWriter{typ: api.EventStderr, emit: emit}
	res, err := s.deps.Orchestrator.Exec(c.Request().Context(), caller(c).ID, c.Param("id"), opts, nil, stdout, stderr)
	mu.Lock()
	begun := started
	mu.Unlock()
	if err != nil {
		if !begun {
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

func (w eventWriter) Write(p []byte) (int, error) {
	w.emit(api.ExecEvent{Type: w.typ, Data: string(p)})
	return len(p), nil
}

// cappedBuffer keeps the first limit bytes written to it.
type cappedBuffer struct {
	buf       []byte
	limit     int64
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.limit - int64(len(b.buf))
	if int64(len(p)) > room {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.truncated = true
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// String returns the output, cut back to a whole UTF-8 character if the cap
// split one.
func (b *cappedBuffer) String() string {
	s := b.buf
	for i := 0; b.truncated && i < utf8.UTFMax-1 && len(s) > 0; i++ {
		if r, size := utf8.DecodeLastRune(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return string(s)
}

func toExecResult(r agent.ExecResult) api.ExecResult {
	return api.ExecResult{
		ExitCode: r.ExitCode, Signal: r.Signal, DurationMs: r.DurationMs, CPUMs: r.CPUMs,
		PeakMemoryKB: r.PeakMemoryKB, OOMKilled: r.OOMKilled, TimedOut: r.TimedOut,
		Truncated:  r.StdoutTruncated || r.StderrTruncated,
		StartError: r.StartError,
	}
}
