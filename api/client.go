package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls a bothy server.
type Client struct {
	base string
	key  string
	http *http.Client
}

// NewClient returns a client of the server at baseURL (for example
// "http://127.0.0.1:7070") that authenticates with key.
func NewClient(baseURL, key string) *Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        64,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), key: key, http: &http.Client{Transport: tr}}
}

// do sends a request with a JSON body (when in is not nil) and decodes a JSON
// answer into out (when not nil). Error answers become *Error.
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, in, out any) error {
	resp, err := c.send(ctx, method, path, hdr, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode %s %s: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns a successful response, or the error it
// carried.
func (c *Client) send(ctx context.Context, method, path string, hdr http.Header, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	var env ErrorEnvelope
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &env); err != nil || env.Error.Code == "" {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b))), Status: resp.StatusCode}
	}
	env.Error.Status = resp.StatusCode
	env.Error.RetryAfter, _ = strconv.Atoi(resp.Header.Get("Retry-After"))
	return &env.Error
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// CreateSandbox creates a sandbox. A non-empty idempotencyKey makes a repeated
// call return the first call's sandbox.
func (c *Client) CreateSandbox(ctx context.Context, req CreateSandboxRequest, idempotencyKey string) (Sandbox, error) {
	var hdr http.Header
	if idempotencyKey != "" {
		hdr = http.Header{"Idempotency-Key": {idempotencyKey}}
	}
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes", hdr, req, &sb)
	return sb, err
}

// ListOptions filters and pages GET /v1/sandboxes.
type ListOptions struct {
	Labels map[string]string
	State  string
	Limit  int
	Cursor string
}

// ListSandboxes lists the caller's sandboxes.
func (c *Client) ListSandboxes(ctx context.Context, opts ListOptions) (SandboxList, error) {
	q := url.Values{}
	for k, v := range opts.Labels {
		q.Add("label", k+"="+v)
	}
	if opts.State != "" {
		q.Set("state", opts.State)
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	if opts.Cursor != "" {
		q.Set("cursor", opts.Cursor)
	}
	path := "/v1/sandboxes"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out SandboxList
	err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out, err
}

// GetSandbox returns one sandbox.
func (c *Client) GetSandbox(ctx context.Context, id string) (Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodGet, "/v1/sandboxes/"+url.PathEscape(id), nil, nil, &sb)
	return sb, err
}

// UpdateSandbox changes a sandbox's labels, idle timeout or TTL.
func (c *Client) UpdateSandbox(ctx context.Context, id string, req UpdateSandboxRequest) (Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPatch, "/v1/sandboxes/"+url.PathEscape(id), nil, req, &sb)
	return sb, err
}

// DeleteSandbox deletes a sandbox and its files.
func (c *Client) DeleteSandbox(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/sandboxes/"+url.PathEscape(id), nil, nil, nil)
}

// StopSandbox stops a sandbox, keeping its files.
func (c *Client) StopSandbox(ctx context.Context, id string) (Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/stop", nil, nil, &sb)
	return sb, err
}

// StartSandbox starts a stopped sandbox.
func (c *Client) StartSandbox(ctx context.Context, id string) (Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/start", nil, nil, &sb)
	return sb, err
}

// PauseSandbox freezes a sandbox's processes, keeping their memory.
func (c *Client) PauseSandbox(ctx context.Context, id string) (Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/pause", nil, nil, &sb)
	return sb, err
}

// ResumeSandbox thaws a paused sandbox.
func (c *Client) ResumeSandbox(ctx context.Context, id string) (Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/resume", nil, nil, &sb)
	return sb, err
}

// CreateSnapshot checkpoints a sandbox's filesystem.
func (c *Client) CreateSnapshot(ctx context.Context, id string, req CreateSnapshotRequest) (Snapshot, error) {
	var sn Snapshot
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/snapshots", nil, req, &sn)
	return sn, err
}

// ListSnapshots lists the caller's snapshots, of one sandbox when sandboxID is
// not empty.
func (c *Client) ListSnapshots(ctx context.Context, sandboxID string) (SnapshotList, error) {
	path := "/v1/snapshots"
	if sandboxID != "" {
		path += "?sandbox=" + url.QueryEscape(sandboxID)
	}
	var out SnapshotList
	err := c.do(ctx, http.MethodGet, path, nil, nil, &out)
	return out, err
}

// GetSnapshot returns one snapshot.
func (c *Client) GetSnapshot(ctx context.Context, id string) (Snapshot, error) {
	var sn Snapshot
	err := c.do(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(id), nil, nil, &sn)
	return sn, err
}

// DeleteSnapshot deletes a snapshot no sandbox or snapshot depends on.
func (c *Client) DeleteSnapshot(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/snapshots/"+url.PathEscape(id), nil, nil, nil)
}

// ExportSnapshot streams a snapshot's portable archive into w.
func (c *Client) ExportSnapshot(ctx context.Context, id string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(id)+"/export", nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

// ImportSnapshot uploads an exported archive; it is verified before anything is
// kept.
func (c *Client) ImportSnapshot(ctx context.Context, r io.Reader) (Snapshot, error) {
	var sn Snapshot
	err := c.stream(ctx, http.MethodPost, "/v1/snapshots/import", r, -1, &sn)
	return sn, err
}

// DiffSnapshot lists what changed from snapshot id to to (a snapshot, or a
// sandbox's current state).
func (c *Client) DiffSnapshot(ctx context.Context, id, to string) (Diff, error) {
	var d Diff
	err := c.do(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(id)+"/diff?to="+url.QueryEscape(to), nil, nil, &d)
	return d, err
}

// RestoreSandbox rolls a sandbox back to a snapshot, in place: all of it, or
// only the given paths.
func (c *Client) RestoreSandbox(ctx context.Context, id, snapshot string, paths ...string) (Sandbox, error) {
	var sb Sandbox
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/restore", nil, RestoreRequest{Snapshot: snapshot, Paths: paths}, &sb)
	return sb, err
}

// Fork makes req.Count new sandboxes from a sandbox's filesystem as it is now.
func (c *Client) Fork(ctx context.Context, id string, req ForkRequest) (ForkResult, error) {
	var out ForkResult
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/fork", nil, req, &out)
	return out, err
}

// Exec runs a command and returns its buffered output.
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest) (ExecResult, error) {
	var res ExecResult
	if err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/exec", nil, req, &res); err != nil {
		return res, err
	}
	err := decodeOutput(&res.Stdout, &res.StdoutEncoding)
	if err2 := decodeOutput(&res.Stderr, &res.StderrEncoding); err == nil {
		err = err2
	}
	return res, err
}

// decodeOutput turns base64 output back into its bytes, clearing enc.
func decodeOutput(s, enc *string) error {
	if *enc != "base64" {
		return nil
	}
	b, err := base64.StdEncoding.DecodeString(*s)
	if err != nil {
		return fmt.Errorf("decode output: %w", err)
	}
	*s, *enc = string(b), ""
	return nil
}

// ExecStream runs a command, writing its output to stdout and stderr as it
// arrives, and returns its result.
func (c *Client) ExecStream(ctx context.Context, id string, req ExecRequest, stdout, stderr io.Writer) (ExecResult, error) {
	resp, err := c.send(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/exec",
		http.Header{"Accept": {"application/x-ndjson"}}, req)
	if err != nil {
		return ExecResult{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var ev ExecEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return ExecResult{}, fmt.Errorf("decode exec event: %w", err)
		}
		if res, done, err := ev.apply(stdout, stderr); done || err != nil {
			return res, err
		}
	}
	if err := sc.Err(); err != nil {
		return ExecResult{}, err
	}
	return ExecResult{}, io.ErrUnexpectedEOF
}

// apply writes an output event to stdout or stderr; an exit or error event
// is the end (done), with the result or the error.
func (ev ExecEvent) apply(stdout, stderr io.Writer) (res ExecResult, done bool, err error) {
	if err := decodeOutput(&ev.Data, &ev.Encoding); err != nil {
		return ExecResult{}, true, err
	}
	switch ev.Type {
	case EventStdout:
		_, _ = io.WriteString(stdout, ev.Data)
	case EventStderr:
		_, _ = io.WriteString(stderr, ev.Data)
	case EventExit:
		if ev.Result == nil {
			return ExecResult{}, true, errors.New("exit event without a result")
		}
		return *ev.Result, true, nil
	case EventError:
		if ev.Error != nil {
			return ExecResult{}, true, ev.Error
		}
		return ExecResult{}, true, errors.New("exec failed")
	}
	return ExecResult{}, false, nil
}

// ListImages lists the images sandboxes can use.
func (c *Client) ListImages(ctx context.Context) (ImageList, error) {
	var out ImageList
	err := c.do(ctx, http.MethodGet, "/v1/images", nil, nil, &out)
	return out, err
}

// BuildImage builds one of the images bothy has a recipe for (admin only),
// reporting progress lines: when it is missing or its recipe changed, or always
// with force.
func (c *Client) BuildImage(ctx context.Context, name string, force bool, progress func(string)) (Image, error) {
	resp, err := c.send(ctx, http.MethodPost, "/v1/images", nil, BuildImageRequest{Name: name, Force: force})
	if err != nil {
		return Image{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev BuildEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return Image{}, fmt.Errorf("decode build event: %w", err)
		}
		switch {
		case ev.Type == "progress" && progress != nil:
			progress(ev.Line)
		case ev.Type == "done" && ev.Image != nil:
			return *ev.Image, nil
		case ev.Type == "error" && ev.Error != nil:
			return Image{}, ev.Error
		}
	}
	return Image{}, io.ErrUnexpectedEOF
}

// CreateKey makes an API key (admin only); its secret is in the answer only.
func (c *Client) CreateKey(ctx context.Context, req CreateKeyRequest) (CreatedKey, error) {
	var out CreatedKey
	err := c.do(ctx, http.MethodPost, "/v1/keys", nil, req, &out)
	return out, err
}

// ListKeys lists API keys (admin only).
func (c *Client) ListKeys(ctx context.Context) (KeyList, error) {
	var out KeyList
	err := c.do(ctx, http.MethodGet, "/v1/keys", nil, nil, &out)
	return out, err
}

// RevokeKey revokes an API key (admin only).
func (c *Client) RevokeKey(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/keys/"+url.PathEscape(id), nil, nil, nil)
}

// SetKeyQuota sets a key's own quota fields (admin only); zero fields follow
// the server's defaults.
func (c *Client) SetKeyQuota(ctx context.Context, id string, q Quota) (Key, error) {
	var out Key
	err := c.do(ctx, http.MethodPatch, "/v1/keys/"+url.PathEscape(id), nil, UpdateKeyRequest{Quota: &q}, &out)
	return out, err
}

// Ready returns the server's readiness.
func (c *Client) Ready(ctx context.Context) (Readiness, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/readyz", nil)
	if err != nil {
		return Readiness{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Readiness{}, err
	}
	defer resp.Body.Close()
	var r Readiness
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return Readiness{}, err
	}
	return r, nil
}

// Routes reports bothy's route table and each route's bounds (admin).
func (c *Client) Routes(ctx context.Context) (RouteList, error) {
	var out RouteList
	err := c.do(ctx, http.MethodGet, "/v1/routes", nil, nil, &out)
	return out, err
}
