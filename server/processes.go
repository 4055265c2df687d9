package server

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/process"
)

func (s *Server) startProcess(c *echo.Context) error {
	var req api.StartProcessRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if req.TimeoutMs < 0 {
		return badRequest("timeout_ms: must not be negative")
	}
	p, err := s.deps.Processes.Start(c.Request().Context(), caller(c).ID, c.Param("id"), process.StartOptions{
		Argv: req.Cmd, Shell: req.Shell, Env: req.Env, Cwd: req.Cwd, User: req.User, Tag: req.Tag, Stdin: req.Stdin,
		Timeout: time.Duration(req.TimeoutMs) * time.Millisecond, LogBytes: req.LogBytes,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toProcess(p))
}

func (s *Server) listProcesses(c *echo.Context) error {
	list, err := s.deps.Processes.List(c.Request().Context(), caller(c).ID, c.Param("id"), c.QueryParam("tag"))
	if err != nil {
		return err
	}
	out := api.ProcessList{Processes: make([]api.Process, 0, len(list))}
	for _, p := range list {
		out.Processes = append(out.Processes, toProcess(p))
	}
	return c.JSON(http.StatusOK, out)
}

// pidParam reads the :pid of the route.
func pidParam(c *echo.Context) (int, error) {
	pid, err := strconv.Atoi(c.Param("pid"))
	if err != nil || pid < 1 {
		return 0, badRequest("pid: want a process ID, got " + strconv.Quote(c.Param("pid")))
	}
	return pid, nil
}

// processAnswer answers with a process, or the error.
func processAnswer(c *echo.Context, p process.Info, err error) error {
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProcess(p))
}

func (s *Server) getProcess(c *echo.Context) error {
	pid, err := pidParam(c)
	if err != nil {
		return err
	}
	p, err := s.deps.Processes.Get(c.Request().Context(), caller(c).ID, c.Param("id"), pid)
	return processAnswer(c, p, err)
}

func (s *Server) killProcess(c *echo.Context) error {
	pid, err := pidParam(c)
	if err != nil {
		return err
	}
	p, err := s.deps.Processes.Kill(c.Request().Context(), caller(c).ID, c.Param("id"), pid)
	return processAnswer(c, p, err)
}

func (s *Server) signalProcess(c *echo.Context) error {
	pid, err := pidParam(c)
	if err != nil {
		return err
	}
	var req api.SignalRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if req.Signal == "" {
		return badRequest("signal: required (SIGTERM, INT, ...)")
	}
	p, err := s.deps.Processes.Signal(c.Request().Context(), caller(c).ID, c.Param("id"), pid, req.Signal)
	return processAnswer(c, p, err)
}

// waitProcess answers once the process exited, or ?timeout_ms= passed (the
// answer then says it runs).
func (s *Server) waitProcess(c *echo.Context) error {
	pid, err := pidParam(c)
	if err != nil {
		return err
	}
	timeout, err := intParam(c.QueryParam("timeout_ms"), 0, int(process.MaxTimeout.Milliseconds()))
	if err != nil {
		return badRequest("timeout_ms: " + err.Error())
	}
	p, err := s.deps.Processes.Wait(c.Request().Context(), caller(c).ID, c.Param("id"), pid, time.Duration(timeout)*time.Millisecond)
	return processAnswer(c, p, err)
}

// writeStdin writes the raw body (at most process.MaxStdinWrite bytes) to
// the process's stdin.
func (s *Server) writeStdin(c *echo.Context) error {
	pid, err := pidParam(c)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(io.LimitReader(c.Request().Body, process.MaxStdinWrite+1))
	if err != nil {
		return badRequest("could not read the request body")
	}
	if len(data) > process.MaxStdinWrite {
		return newError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("one write to stdin is at most %d bytes", process.MaxStdinWrite))
	}
	p, err := s.deps.Processes.Stdin(c.Request().Context(), caller(c).ID, c.Param("id"), pid, data, false)
	return processAnswer(c, p, err)
}

func (s *Server) closeStdin(c *echo.Context) error {
	pid, err := pidParam(c)
	if err != nil {
		return err
	}
	p, err := s.deps.Processes.Stdin(c.Request().Context(), caller(c).ID, c.Param("id"), pid, nil, true)
	return processAnswer(c, p, err)
}

// processLogs streams a process's output as NDJSON records (or server-sent
// events with Accept: text/event-stream) from ?from=OFFSET, following with
// ?follow=true; ?stream=stdout|stderr leaves out the other stream's output.
func (s *Server) processLogs(c *echo.Context) error {
	pid, err := pidParam(c)
	if err != nil {
		return err
	}
	q := c.Request().URL.Query()
	from, err := strconv.ParseInt(q.Get("from"), 10, 64)
	if q.Get("from") == "" {
		from, err = 0, nil
	}
	if err != nil || from < 0 {
		return badRequest("from: want a byte offset")
	}
	only := q.Get("stream")
	switch only {
	case "", "both":
		only = ""
	case "stdout", "stderr":
	default:
		return badRequest("stream: want stdout, stderr or both")
	}
	events := newEventStream(c)
	emit := func(r api.LogRecord) error { return events.send(r.Offset, r.Type, r) }
	var line []byte // one output record's JSON, reused
	err = s.deps.Processes.Logs(c.Request().Context(), caller(c).ID, c.Param("id"), pid, from, q.Get("follow") == "true",
		func(r process.Record) error {
			if r.Type == process.RecordOutput && only != "" && r.Stream != only {
				return nil
			}
			if r.Type == process.RecordOutput && r.Info == nil {
				line = appendLogRecord(line[:0], r)
				return events.sendJSON(r.Offset, r.Type, line)
			}
			out := api.LogRecord{Type: r.Type, Stream: r.Stream, Offset: r.Offset, To: r.To}
			if len(r.Data) > 0 {
				out.Encoding = api.OutputEncoding(r.Data)
				if out.Encoding == api.EncodingBase64 {
					out.Data = base64.StdEncoding.EncodeToString(r.Data)
				} else {
					out.Data = string(r.Data)
				}
			}
			if r.Info != nil {
				p := toProcess(*r.Info)
				out.Process = &p
			}
			return emit(out)
		})
	if err != nil && !events.begun() {
		return err // nothing sent yet: the ordinary error envelope
	}
	if err != nil && c.Request().Context().Err() == nil {
		_, code, msg := classify(err)
		rid, _ := c.Get(ctxRequestID).(string)
		_ = emit(api.LogRecord{Type: "error", Error: &api.Error{Code: code, Message: msg, RequestID: rid}})
	}
	return nil
}

func toProcess(p process.Info) api.Process {
	out := api.Process{PID: p.PID, Tag: p.Tag, Cmd: p.Argv, Cwd: p.Cwd, User: p.User, State: p.State,
		StartedAt: p.StartedAt.UTC(), ExitCode: p.ExitCode, Signal: p.Signal, TimedOut: p.TimedOut, CPUMs: p.CPUMs,
		PeakMemoryKB: p.PeakMemoryKB, StdinOpen: p.StdinOpen, OutputBytes: p.OutputBytes, OutputFrom: p.OutputFrom}
	if p.EndedAt != nil {
		t := p.EndedAt.UTC()
		out.EndedAt = &t
	}
	return out
}

// appendLogRecord appends output record r as api.LogRecord's JSON, written
// by hand into a buffer the stream reuses: a followed log holds one small
// record, whatever it has streamed.
func appendLogRecord(b []byte, r process.Record) []byte {
	b = append(b, `{"type":"output","stream":`...)
	b = strconv.AppendQuote(b, r.Stream)
	b = append(b, `,"offset":`...)
	b = strconv.AppendInt(b, r.Offset, 10)
	if len(r.Data) > 0 {
		b = append(b, `,"data":"`...)
		if api.OutputEncoding(r.Data) == api.EncodingBase64 {
			b = base64.StdEncoding.AppendEncode(b, r.Data)
			b = append(b, `","encoding":"base64"`...)
		} else {
			b = appendJSONString(b, r.Data)
			b = append(b, '"')
		}
	}
	return append(b, '}')
}
