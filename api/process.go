package api

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// StartProcessRequest is the body of POST /v1/sandboxes/{id}/processes.
type StartProcessRequest struct {
	// Cmd runs a program; Shell runs a line with /bin/sh -c. Exactly one.
	Cmd   []string          `json:"cmd,omitempty"`
	Shell string            `json:"shell,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Cwd   string            `json:"cwd,omitempty"`
	User  string            `json:"user,omitempty"`
	// Tag labels the process, to find it by (?tag= on the list).
	Tag string `json:"tag,omitempty"`
	// Stdin keeps its standard input open for POST .../stdin.
	Stdin bool `json:"stdin,omitempty"`
	// TimeoutMs kills the process group after this long; 0 is no limit.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// LogBytes is how much recent output the sandbox keeps for the logs
	// route: 4 KiB to 64 MiB, 8 MiB when absent. Older output is dropped and
	// a reader asking for it gets a gap record. The logs of all processes
	// keep at most a quarter of the sandbox's memory together: past that, a
	// growing log keeps its fair share.
	LogBytes int64 `json:"log_bytes,omitempty"`
}

// Process describes a background process.
type Process struct {
	PID          int        `json:"pid"`
	Tag          string     `json:"tag,omitempty"`
	Cmd          []string   `json:"cmd"`
	Cwd          string     `json:"cwd"`
	User         string     `json:"user,omitempty"`
	State        string     `json:"state"` // running, exited
	StartedAt    time.Time  `json:"started_at"`
	EndedAt      *time.Time `json:"ended_at,omitempty"`
	ExitCode     *int       `json:"exit_code,omitempty"`
	Signal       string     `json:"signal,omitempty"`
	TimedOut     bool       `json:"timed_out,omitempty"`
	CPUMs        float64    `json:"cpu_ms"`
	PeakMemoryKB int64      `json:"peak_memory_kb,omitempty"`
	StdinOpen    bool       `json:"stdin_open"`
	// OutputBytes is all the output so far; OutputFrom is the offset of the
	// oldest output still kept (older output was dropped).
	OutputBytes int64 `json:"output_bytes"`
	OutputFrom  int64 `json:"output_from"`
}

// ProcessList is the answer of GET /v1/sandboxes/{id}/processes.
type ProcessList struct {
	Processes []Process `json:"processes"`
}

// SignalRequest is the body of POST .../processes/{pid}/signal.
type SignalRequest struct {
	Signal string `json:"signal"` // SIGTERM, TERM, INT, HUP, KILL...
}

// LogRecord is one line of GET .../processes/{pid}/logs: "output" (Data of
// Stream at byte Offset, in Encoding "base64" when it is not UTF-8), "gap"
// (the output from Offset to To was dropped), and last "end" (with the
// process), or "error" when the stream broke off.
type LogRecord struct {
	Type     string   `json:"type"`
	Stream   string   `json:"stream,omitempty"`
	Offset   int64    `json:"offset"`
	To       int64    `json:"to,omitempty"`
	Data     string   `json:"data,omitempty"`
	Encoding string   `json:"encoding,omitempty"`
	Process  *Process `json:"process,omitempty"`
	Error    *Error   `json:"error,omitempty"`
}

func (c *Client) processPath(id string, pid int, tail string) string {
	return "/v1/sandboxes/" + url.PathEscape(id) + "/processes/" + strconv.Itoa(pid) + tail
}

// StartProcess starts a background process in sandbox id.
func (c *Client) StartProcess(ctx context.Context, id string, req StartProcessRequest) (Process, error) {
	var p Process
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/processes", nil, req, &p)
	return p, err
}

// ListProcesses lists sandbox id's running and recently exited processes
// (those tagged tag, when it is not empty).
func (c *Client) ListProcesses(ctx context.Context, id, tag string) (ProcessList, error) {
	path := "/v1/sandboxes/" + url.PathEscape(id) + "/processes"
	if tag != "" {
		path += "?tag=" + url.QueryEscape(tag)
	}
	var l ProcessList
	err := c.do(ctx, http.MethodGet, path, nil, nil, &l)
	return l, err
}

// GetProcess describes process pid.
func (c *Client) GetProcess(ctx context.Context, id string, pid int) (Process, error) {
	var p Process
	err := c.do(ctx, http.MethodGet, c.processPath(id, pid, ""), nil, nil, &p)
	return p, err
}

// SignalProcess sends a signal to process pid's group.
func (c *Client) SignalProcess(ctx context.Context, id string, pid int, signal string) (Process, error) {
	var p Process
	err := c.do(ctx, http.MethodPost, c.processPath(id, pid, "/signal"), nil, SignalRequest{Signal: signal}, &p)
	return p, err
}

// KillProcess kills process pid's group, and returns once it exited.
func (c *Client) KillProcess(ctx context.Context, id string, pid int) (Process, error) {
	var p Process
	err := c.do(ctx, http.MethodDelete, c.processPath(id, pid, ""), nil, nil, &p)
	return p, err
}

// WaitProcess returns once process pid exited, or timeout passed (0: no
// bound of its own).
func (c *Client) WaitProcess(ctx context.Context, id string, pid int, timeout time.Duration) (Process, error) {
	path := c.processPath(id, pid, "/wait")
	if timeout > 0 {
		path += "?timeout_ms=" + strconv.FormatInt(timeout.Milliseconds(), 10)
	}
	var p Process
	err := c.do(ctx, http.MethodGet, path, nil, nil, &p)
	return p, err
}

// WriteStdin writes data to process pid's standard input.
func (c *Client) WriteStdin(ctx context.Context, id string, pid int, data []byte) (Process, error) {
	var p Process
	err := c.stream(ctx, http.MethodPost, c.processPath(id, pid, "/stdin"), bytes.NewReader(data), int64(len(data)), &p)
	return p, err
}

// CloseStdin closes process pid's standard input.
func (c *Client) CloseStdin(ctx context.Context, id string, pid int) (Process, error) {
	var p Process
	err := c.do(ctx, http.MethodPost, c.processPath(id, pid, "/stdin/close"), nil, nil, &p)
	return p, err
}

// ProcessLogs streams process pid's output records to fn from byte offset
// from: what is kept, and with follow what comes, until the "end" record
// (which fn gets too). Output data comes decoded.
func (c *Client) ProcessLogs(ctx context.Context, id string, pid int, from int64, follow bool, fn func(LogRecord) error) error {
	q := url.Values{"from": {strconv.FormatInt(from, 10)}}
	if follow {
		q.Set("follow", "true")
	}
	resp, err := c.send(ctx, http.MethodGet, c.processPath(id, pid, "/logs?"+q.Encode()), nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var r LogRecord
		if err := dec.Decode(&r); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if r.Type == "error" && r.Error != nil {
			return r.Error
		}
		if r.Encoding == "base64" {
			b, err := base64.StdEncoding.DecodeString(r.Data)
			if err != nil {
				return fmt.Errorf("decode output: %w", err)
			}
			r.Data, r.Encoding = string(b), ""
		}
		if err := fn(r); err != nil {
			return err
		}
		if r.Type == "end" {
			return nil
		}
	}
}
