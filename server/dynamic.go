package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/isolate"
)

// run handles POST /v1/run.
func (s *Server) run(c *echo.Context) error {
	var req api.RunRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if req.TimeoutMs < 0 || req.MemoryMB < 0 || req.MaxOutputBytes < 0 {
		return badRequest("timeout_ms, memory_mb and max_output_bytes must not be negative")
	}
	files := make([]isolate.File, 0, len(req.Files))
	for _, f := range req.Files {
		data := []byte(f.Content)
		switch f.Encoding {
		case "", "utf-8", "utf8":
		case "base64":
			var err error
			if data, err = base64.StdEncoding.DecodeString(f.Content); err != nil {
				return badRequest(fmt.Sprintf("file %q: content is not valid base64", f.Path))
			}
		default:
			return badRequest(fmt.Sprintf("file %q: encoding %q is not utf-8 or base64", f.Path, f.Encoding))
		}
		files = append(files, isolate.File{Path: f.Path, Data: data, Mode: f.Mode})
	}
	maxOut := req.MaxOutputBytes
	if maxOut == 0 {
		maxOut = isolate.DefaultMaxOutput
	}
	if maxOut > isolate.MaxOutput {
		return badRequest(fmt.Sprintf("max_output_bytes must be between 1 and %d", isolate.MaxOutput))
	}
	// The agent caps output; these buffers cap it again, since the agent is
	// not trusted. The caps come out of the server's output budget.
	maxOut, err := reserveOutput(c.Request().Context(), maxOut)
	if err != nil {
		return err
	}
	stdout := &cappedBuffer{limit: maxOut}
	stderr := &cappedBuffer{limit: maxOut}
	res, err := s.deps.Isolate.Run(c.Request().Context(), caller(c).ID, isolate.RunOptions{
		Runtime: req.Runtime, Code: req.Code, Stdin: []byte(req.Stdin), Files: files, Env: req.Env,
		Timeout: time.Duration(req.TimeoutMs) * time.Millisecond, MemoryMB: req.MemoryMB,
		Mode: req.Mode, MaxOutput: maxOut,
	}, stdout, stderr)
	if err != nil {
		return err
	}
	so, se := stdout.Bytes(), stderr.Bytes()
	out := api.RunResult{
		StdoutEncoding: api.OutputEncoding(so), StderrEncoding: api.OutputEncoding(se), ExitCode: res.ExitCode, Signal: res.Signal,
		DurationMs: res.DurationMs, CPUMs: res.CPUMs, MemoryPeakBytes: res.PeakMemoryKB << 10,
		TimedOut: res.TimedOut, OOM: res.OOMKilled, Leftover: res.Leftover,
		Truncated: res.Truncated || stdout.truncated || stderr.truncated,
		Files:     make([]api.RunFile, 0, len(res.Files)), Runner: res.Runner, Warm: res.Warm, WallMs: res.WallMs,
	}
	for _, f := range res.Files {
		rf := api.RunFile{Path: f.Path, Content: string(f.Data), Mode: f.Mode}
		if !utf8.Valid(f.Data) {
			rf.Content, rf.Encoding = base64.StdEncoding.EncodeToString(f.Data), "base64"
		}
		out.Files = append(out.Files, rf)
	}
	return writeWithOutputs(c, http.StatusOK, out,
		outputField{"stdout", so, out.StdoutEncoding}, outputField{"stderr", se, out.StderrEncoding})
}

// listPools handles GET /v1/pools.
func (s *Server) listPools(c *echo.Context) error {
	out := api.PoolList{Pools: []api.Pool{}, SandboxPools: []api.SandboxPool{}}
	if s.deps.Orchestrator != nil {
		for _, p := range s.deps.Orchestrator.Pools() {
			out.SandboxPools = append(out.SandboxPools, api.SandboxPool{Image: p.Image, Size: p.Size, Ready: p.Ready, Starting: p.Starting,
				Hits: p.Hits, Misses: p.Misses, Failures: p.Failures, Error: p.Error, BackoffMs: p.Backoff.Milliseconds(), LastRefillMs: p.LastRefillMs})
		}
	}
	for _, p := range s.deps.Isolate.Pools() {
		out.Pools = append(out.Pools, api.Pool{
			Runtime: p.Runtime, MemoryMB: p.MemoryMB, Idle: p.Idle, Leased: p.Leased, Starting: p.Starting,
			MinIdle: p.MinIdle, Target: p.Target, MaxTotal: p.MaxTotal, Hits: p.Hits, Misses: p.Misses,
			Failures: p.Failures, RefillP50Ms: p.RefillP50Ms, RefillLastMs: p.RefillLastMs,
		})
	}
	return c.JSON(http.StatusOK, out)
}

// deployApp handles PUT /v1/apps/{name}.
func (s *Server) deployApp(c *echo.Context) error {
	var req api.DeployAppRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	l := req.Limits
	app, err := s.deps.Isolate.Deploy(c.Request().Context(), caller(c).ID, c.Param("name"), isolate.DeployOptions{
		Runtime: req.Runtime, Code: req.Code, Env: req.Env,
		Limits: isolate.AppLimits{TimeoutMs: l.TimeoutMs, MemoryMB: l.MemoryMB, StorageBytes: l.StorageBytes,
			RatePerSec: l.RatePerSec, Burst: l.Burst},
	})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if app.Version == 1 {
		status = http.StatusCreated
	}
	return c.JSON(status, s.toApp(c, app, false))
}

func (s *Server) toApp(c *echo.Context, a isolate.App, withCode bool) api.App {
	out := api.App{
		Name: a.Name, Runtime: a.Runtime, Version: a.Version, CodeSHA256: a.CodeSHA256(), Env: a.Env,
		Limits: api.AppLimits{TimeoutMs: a.Limits.TimeoutMs, MemoryMB: a.Limits.MemoryMB,
			StorageBytes: a.Limits.StorageBytes, RatePerSec: a.Limits.RatePerSec, Burst: a.Limits.Burst},
		StorageBytes: s.deps.Isolate.StorageBytes(c.Request().Context(), a), Warm: s.deps.Isolate.Warm(a),
		CreatedAt: a.CreatedAt.UTC(), UpdatedAt: a.UpdatedAt.UTC(),
	}
	if withCode {
		out.Code = a.Code
	}
	return out
}

// getApp handles GET /v1/apps/{name}.
func (s *Server) getApp(c *echo.Context) error {
	app, err := s.deps.Isolate.GetApp(c.Request().Context(), caller(c).ID, c.Param("name"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, s.toApp(c, app, true))
}

// listApps handles GET /v1/apps.
func (s *Server) listApps(c *echo.Context) error {
	apps, err := s.deps.Isolate.Apps(c.Request().Context(), caller(c).ID)
	if err != nil {
		return err
	}
	out := api.AppList{Apps: make([]api.App, 0, len(apps))}
	for _, a := range apps {
		out.Apps = append(out.Apps, s.toApp(c, a, false))
	}
	return c.JSON(http.StatusOK, out)
}

// deleteApp handles DELETE /v1/apps/{name}.
func (s *Server) deleteApp(c *echo.Context) error {
	if err := s.deps.Isolate.DeleteApp(c.Request().Context(), caller(c).ID, c.Param("name")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// maxAppBody bounds the body of a request to an app.
const maxAppBody = 4 << 20

// hopHeaders are not passed between the client and the app.
var hopHeaders = map[string]bool{
	"Authorization": true, "Connection": true, "Keep-Alive": true, "Proxy-Authorization": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// invokeApp handles any method on /v1/apps/{name}/invoke[/*path].
func (s *Server) invokeApp(c *echo.Context) error {
	key, name := caller(c), c.Param("name")
	ctx := c.Request().Context()
	app, err := s.deps.Isolate.GetApp(ctx, key.ID, name)
	if err != nil {
		return err
	}
	r := c.Request()
	body, err := io.ReadAll(r.Body) // at most maxAppBody: the route's limit
	if err != nil {
		var sc echo.HTTPStatusCoder
		if errors.As(err, &sc) {
			return newError(http.StatusRequestEntityTooLarge, api.CodeTooLarge, "an app request body may be at most 4 MiB")
		}
		return badRequest("could not read the request body")
	}
	headers := make(map[string]string, len(r.Header))
	for k, v := range r.Header {
		if !hopHeaders[k] && len(v) > 0 {
			headers[strings.ToLower(k)] = strings.Join(v, ", ")
		}
	}
	res, err := s.deps.Isolate.Invoke(ctx, app, isolate.Request{
		Method: r.Method, Path: "/" + strings.TrimPrefix(c.Param("*"), "/"), Query: r.URL.RawQuery,
		Headers: headers, Body: body,
	})
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("X-Bothy-App-Version", strconv.Itoa(res.Version))
	if res.Error != "" {
		code := "app_error"
		if res.TimedOut {
			code = "app_timeout"
		}
		return c.JSON(res.Status, api.ErrorEnvelope{Error: api.Error{Code: code, Message: res.Error}})
	}
	for k, v := range res.Headers {
		if !hopHeaders[http.CanonicalHeaderKey(k)] {
			h.Set(k, v)
		}
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "application/octet-stream")
	}
	return c.Blob(res.Status, h.Get("Content-Type"), res.Body)
}

// appLogs handles GET /v1/apps/{name}/logs.
func (s *Server) appLogs(c *echo.Context) error {
	key, name := caller(c), c.Param("name")
	if _, err := s.deps.Isolate.GetApp(c.Request().Context(), key.ID, name); err != nil {
		return err
	}
	limit := 100
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit must be between 1 and 1000")
		}
		limit = n
	}
	entries, err := s.deps.Ledger.Logs(c.Request().Context(), key.ID, "invoke", name, limit)
	if err != nil {
		return err
	}
	out := api.LogList{Entries: make([]api.LogEntry, 0, len(entries))}
	for _, e := range entries {
		out.Entries = append(out.Entries, api.LogEntry{
			Time: e.Time.UTC(), Kind: e.Kind, App: e.App, Status: e.Status, Error: e.Error, DurationMs: e.DurationMs,
			CPUMs: e.CPUMs, RowsRead: e.RowsRead, RowsWritten: e.RowsWritten, BytesIn: e.BytesIn, BytesOut: e.BytesOut,
			Output: e.Output, Truncated: e.Truncated,
		})
	}
	return c.JSON(http.StatusOK, out)
}

// usage handles GET /v1/usage?since=RFC3339[&all=true]. An admin key may see
// every key's usage with all=true.
func (s *Server) usage(c *echo.Context) error {
	key := caller(c)
	since := time.Now().Add(-24 * time.Hour)
	if v := c.QueryParam("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return badRequest("since must be an RFC 3339 time, like 2026-01-02T15:04:05Z")
		}
		since = t
	}
	who := key.ID
	if c.QueryParam("all") == "true" {
		if !key.Admin {
			return newError(http.StatusForbidden, api.CodeForbidden, "only an admin key may see every key's usage")
		}
		who = ""
	}
	rows, err := s.deps.Ledger.Usage(c.Request().Context(), who, since)
	if err != nil {
		return err
	}
	out := api.Usage{Rows: make([]api.UsageRow, 0, len(rows))}
	for _, u := range rows {
		out.Rows = append(out.Rows, api.UsageRow{
			Hour: u.Hour, Key: u.Key, Kind: u.Kind, App: u.App, Requests: u.Requests, Errors: u.Errors,
			DurationMs: u.DurationMs, CPUMs: u.CPUMs, RowsRead: u.RowsRead, RowsWritten: u.RowsWritten,
			BytesIn: u.BytesIn, BytesOut: u.BytesOut,
		})
	}
	return c.JSON(http.StatusOK, out)
}
