package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// RunRequest is the body of POST /v1/run: a piece of code to run in a warm,
// locked-down runner.
type RunRequest struct {
	// Runtime is "python", "node" or "bash".
	Runtime string `json:"runtime"`
	Code    string `json:"code"`
	Stdin   string `json:"stdin,omitempty"`
	// Files are put into the run's working directory (a scratch directory).
	Files     []RunFile         `json:"files,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	TimeoutMs int64             `json:"timeout_ms,omitempty"`
	MemoryMB  int64             `json:"memory_mb,omitempty"`
	// Mode is "process" (the default: a fresh process in a runner leased to
	// the calling key) or "ephemeral" (a runner used once, then destroyed).
	Mode           string `json:"mode,omitempty"`
	MaxOutputBytes int64  `json:"max_output_bytes,omitempty"`
}

// RunFile is a file of a run's scratch directory. Content is UTF-8 text, or
// base64 when Encoding is "base64".
type RunFile struct {
	Path     string `json:"path"`
	Content  string `json:"content"`
	Encoding string `json:"encoding,omitempty"`
	Mode     uint32 `json:"mode,omitempty"`
}

// RunResult is the answer of POST /v1/run. A non-zero exit, a timeout or an
// OOM kill is a result, not an error.
type RunResult struct {
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	// StdoutEncoding and StderrEncoding are "base64" as in ExecResult.
	StdoutEncoding  string  `json:"stdout_encoding,omitempty"`
	StderrEncoding  string  `json:"stderr_encoding,omitempty"`
	ExitCode        int     `json:"exit_code"`
	Signal          string  `json:"signal,omitempty"`
	DurationMs      float64 `json:"duration_ms"`
	CPUMs           float64 `json:"cpu_ms"`
	MemoryPeakBytes int64   `json:"memory_peak_bytes"`
	TimedOut        bool    `json:"timed_out"`
	OOM             bool    `json:"oom"`
	// Truncated says stdout or stderr (or the files) went over their cap.
	Truncated bool `json:"truncated"`
	// Files are the regular files the run made or changed in its scratch
	// directory (links are not followed).
	Files []RunFile `json:"files"`
	// Leftover says processes outlived the run; they were killed and the
	// runner replaced.
	Leftover bool   `json:"leftover,omitempty"`
	Runner   string `json:"runner"`
	// Warm says the runner was warm when the run began.
	Warm bool `json:"warm"`
	// WallMs is bothy's time for the request, the lease included.
	WallMs float64 `json:"wall_ms"`
}

// Pool is one warm pool of runners, in GET /v1/pools.
type Pool struct {
	Runtime      string  `json:"runtime"`
	MemoryMB     int64   `json:"memory_mb"`
	Idle         int     `json:"idle"`
	Leased       int     `json:"leased"`
	Starting     int     `json:"starting"`
	MinIdle      int     `json:"min_idle"`
	Target       int     `json:"target"`
	MaxTotal     int     `json:"max_total"`
	Hits         uint64  `json:"hits"`
	Misses       uint64  `json:"misses"`
	Failures     uint64  `json:"failures"`
	RefillP50Ms  float64 `json:"refill_p50_ms"`
	RefillLastMs float64 `json:"refill_last_ms"`
}

// PoolList is the answer of GET /v1/pools: the runner pools, and the warm
// sandbox pools.
type PoolList struct {
	Pools        []Pool        `json:"pools"`
	SandboxPools []SandboxPool `json:"sandbox_pools"`
}

// SandboxPool is a warm pool of sandboxes: Size sandboxes of Image with the
// default limits kept started, taken by creates that ask for nothing else.
type SandboxPool struct {
	Image    string `json:"image"`
	Size     int    `json:"size"`
	Ready    int    `json:"ready"`
	Starting int    `json:"starting"`
	Hits     uint64 `json:"hits"`
	Misses   uint64 `json:"misses"`
	Failures uint64 `json:"failures"`
	// Error is the last failure to start one, and BackoffMs how long the
	// pool waits before trying again; both clear when one starts.
	Error        string  `json:"error,omitempty"`
	BackoffMs    int64   `json:"backoff_ms,omitempty"`
	LastRefillMs float64 `json:"last_refill_ms"`
}

// AppLimits bound an app.
type AppLimits struct {
	TimeoutMs    int64   `json:"timeout_ms,omitempty"`
	MemoryMB     int64   `json:"memory_mb,omitempty"`
	StorageBytes int64   `json:"storage_bytes,omitempty"`
	RatePerSec   float64 `json:"rate_per_sec,omitempty"`
	Burst        int     `json:"burst,omitempty"`
}

// DeployAppRequest is the body of PUT /v1/apps/{name}.
type DeployAppRequest struct {
	// Runtime is "python" or "node" (also "javascript").
	Runtime string            `json:"runtime"`
	Code    string            `json:"code"`
	Env     map[string]string `json:"env,omitempty"`
	Limits  AppLimits         `json:"limits,omitempty"`
}

// App is a deployed app.
type App struct {
	Name         string            `json:"name"`
	Runtime      string            `json:"runtime"`
	Version      int               `json:"version"`
	CodeSHA256   string            `json:"code_sha256"`
	Code         string            `json:"code,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Limits       AppLimits         `json:"limits"`
	StorageBytes int64             `json:"storage_bytes"`
	// Warm says a runner holds the app loaded now: its next request starts
	// no runner and keeps the module's state.
	Warm      bool      `json:"warm"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AppList is the answer of GET /v1/apps.
type AppList struct {
	Apps []App `json:"apps"`
}

// LogEntry is one run or invoke in the request log.
type LogEntry struct {
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	App         string    `json:"app"`
	Status      int       `json:"status"`
	Error       string    `json:"error,omitempty"`
	DurationMs  float64   `json:"duration_ms"`
	CPUMs       float64   `json:"cpu_ms"`
	RowsRead    int64     `json:"rows_read"`
	RowsWritten int64     `json:"rows_written"`
	BytesIn     int64     `json:"bytes_in"`
	BytesOut    int64     `json:"bytes_out"`
	Output      string    `json:"output,omitempty"`
	Truncated   bool      `json:"truncated,omitempty"`
}

// LogList is the answer of GET /v1/apps/{name}/logs, newest first.
type LogList struct {
	Entries []LogEntry `json:"entries"`
}

// UsageRow is one key's use of one app (kind "invoke") or runtime (kind
// "run") in one hour.
type UsageRow struct {
	Hour        time.Time `json:"hour"`
	Key         string    `json:"key"`
	Kind        string    `json:"kind"`
	App         string    `json:"app"`
	Requests    int64     `json:"requests"`
	Errors      int64     `json:"errors"`
	DurationMs  float64   `json:"duration_ms"`
	CPUMs       float64   `json:"cpu_ms"`
	RowsRead    int64     `json:"rows_read"`
	RowsWritten int64     `json:"rows_written"`
	BytesIn     int64     `json:"bytes_in"`
	BytesOut    int64     `json:"bytes_out"`
}

// Usage is the answer of GET /v1/usage.
type Usage struct {
	Rows []UsageRow `json:"rows"`
}

// Run runs code in a warm runner.
func (c *Client) Run(ctx context.Context, req RunRequest) (RunResult, error) {
	var out RunResult
	if err := c.do(ctx, http.MethodPost, "/v1/run", nil, req, &out); err != nil {
		return out, err
	}
	err := decodeOutput(&out.Stdout, &out.StdoutEncoding)
	if err2 := decodeOutput(&out.Stderr, &out.StderrEncoding); err == nil {
		err = err2
	}
	return out, err
}

// Pools reports the warm pools.
func (c *Client) Pools(ctx context.Context) (PoolList, error) {
	var out PoolList
	err := c.do(ctx, http.MethodGet, "/v1/pools", nil, nil, &out)
	return out, err
}

// DeployApp stores a new version of an app.
func (c *Client) DeployApp(ctx context.Context, name string, req DeployAppRequest) (App, error) {
	var out App
	err := c.do(ctx, http.MethodPut, "/v1/apps/"+url.PathEscape(name), nil, req, &out)
	return out, err
}

// GetApp returns an app, with its code.
func (c *Client) GetApp(ctx context.Context, name string) (App, error) {
	var out App
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name), nil, nil, &out)
	return out, err
}

// ListApps lists the key's apps.
func (c *Client) ListApps(ctx context.Context) (AppList, error) {
	var out AppList
	err := c.do(ctx, http.MethodGet, "/v1/apps", nil, nil, &out)
	return out, err
}

// DeleteApp deletes an app and its data.
func (c *Client) DeleteApp(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/apps/"+url.PathEscape(name), nil, nil, nil)
}

// AppLogs returns an app's newest request log entries.
func (c *Client) AppLogs(ctx context.Context, name string, limit int) (LogList, error) {
	var out LogList
	err := c.do(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name)+"/logs?limit="+strconv.Itoa(limit), nil, nil, &out)
	return out, err
}

// Usage returns the key's hourly usage since the given time (zero: the last
// 24 hours).
func (c *Client) Usage(ctx context.Context, since time.Time) (Usage, error) {
	q := ""
	if !since.IsZero() {
		q = "?since=" + url.QueryEscape(since.UTC().Format(time.RFC3339))
	}
	var out Usage
	err := c.do(ctx, http.MethodGet, "/v1/usage"+q, nil, nil, &out)
	return out, err
}

// Invoke calls an app with an HTTP request (path may carry a query) and
// returns the app's response as it is: a status of 400 or more from the app is
// not an error, but a refusal by bothy (404, 429...) is.
func (c *Client) Invoke(ctx context.Context, name, method, path string, body io.Reader, hdr http.Header) (*http.Response, error) {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/v1/apps/"+url.PathEscape(name)+"/invoke"+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.Header.Get("X-Bothy-Error") != "" {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}
