// Package mcp is bothy's MCP front door: an endpoint of the Model Context
// Protocol (Streamable HTTP, on the official Go SDK) whose tools are
// bothy's own calls, made as the API key that sends them, with the same
// owner checks and quotas. It holds no logic of its own.
package mcp

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/isolate"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/ports"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/snapshot"
	"github.com/bothy/bothy/supervisor"
)

// Deps are the domain services the tools call.
type Deps struct {
	Orchestrator *orchestrator.Orchestrator
	Files        *fsapi.Service
	Processes    *process.Service
	Ports        *ports.Service
	Snapshots    *snapshot.Snapshots
	Isolate      *isolate.Service
	Keys         *supervisor.Keys
	// Version names bothy to clients.
	Version string
}

// Limits of what a tool answers in one result.
const (
	maxToolOutput = 1 << 20   // bytes of command output or file content
	maxExecTime   = 10 * 60e3 // milliseconds
	// copiesPerByte is what one byte of output costs in memory on its way
	// to the client: the buffer, the result's structured and text forms,
	// and the SDK's encodings of them, about 11 bytes allocated (measured),
	// reserved twice over because an answer's garbage stands until the
	// collection after it (Handler). A tool reserves that much from the
	// output budget that every front door shares before it reads output.
	copiesPerByte = 24
	// collectAfter is the output past which a request's answer is
	// collected as soon as it is written (see Handler).
	collectAfter = 256 << 10
)

// Mounts is the MCP endpoint as a route of bothy's one route table: its
// bounds (the body, the output budget, the caps per key) are the REST
// API's, and the server authenticates its bearer key.
func Mounts(d Deps) []bounds.Mount {
	return []bounds.Mount{{Path: "/mcp", Kind: bounds.KindJSON, Auth: true, Handler: Handler(d)}}
}

// Handler serves the MCP endpoint to requests that the server has
// authenticated (supervisor.KeyFrom) and scoped (bounds.From). Every
// request is a session of its own (stateless): a session can never act for
// another key. A request carries one JSON-RPC message: batches, which
// protocol versions since 2025-06-18 no longer have, would let one small
// request ask for any number of answers at once.
func Handler(d Deps) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		key, _ := supervisor.KeyFrom(r.Context())
		return newServer(d, key.ID)
	}, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := supervisor.KeyFrom(r.Context()); !ok || bounds.From(r.Context()) == nil {
			http.Error(w, `{"error":{"code":"unauthenticated","message":"send Authorization: Bearer KEY (a bothy API key)"}}`, http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost {
			// The route's class bounds the body, and reserved it.
			body, err := io.ReadAll(r.Body)
			if err != nil {
				status := http.StatusBadRequest
				var sc interface{ StatusCode() int }
				if errors.As(err, &sc) {
					status = sc.StatusCode()
				}
				http.Error(w, `{"error":{"code":"invalid_argument","message":"could not read the request body"}}`, status)
				return
			}
			if t := bytes.TrimLeft(body, " \t\r\n"); len(t) > 0 && t[0] == '[' {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"JSON-RPC batches are not served: send one message per request"}}`)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		// The SDK does not end a tool's call when its client goes away;
		// the request's own context does.
		st := &request{}
		st.ctx = context.WithValue(r.Context(), requestOf{}, st)
		h.ServeHTTP(w, r.WithContext(st.ctx))
		// The SDK builds an answer whole, several times over (the text,
		// the structured result, the JSON-RPC message), and the budget's
		// reservation ends with the request; at bothy's GC target
		// (--gc-percent 400) that garbage would stand at five times the
		// live heap until the next cycle. A large answer is collected
		// now, so what MCP output costs in memory is what it reserved.
		if st.output.Load() >= collectAfter {
			runtime.GC()
		}
	})
}

type requestOf struct{}

// request is what a tool call knows of the HTTP request it came in.
type request struct {
	ctx context.Context
	// output counts the bytes of output the request's tools kept.
	output atomic.Int64
}

// callCtx is the context of the HTTP request a tool call came in: done
// when the client goes away, and carrying the request's bounds.
func callCtx(ctx context.Context) context.Context {
	if st, ok := ctx.Value(requestOf{}).(*request); ok {
		return st.ctx
	}
	return ctx
}

// newCapped is a buffer for up to limit bytes of a tool's output, counted
// as the output of the request ctx's call came in.
func newCapped(ctx context.Context, limit int64) *capped {
	c := &capped{limit: limit}
	if st, ok := ctx.Value(requestOf{}).(*request); ok {
		c.count = &st.output
	}
	return c
}

// reserveOutput reserves from the request's output budget what streams
// outputs of up to want bytes each cost on their way out, and returns the
// cap each output gets.
func reserveOutput(ctx context.Context, streams int, want int64) (int64, error) {
	sc, err := bounds.MustFrom(ctx)
	if err != nil {
		return 0, err
	}
	got, err := sc.ReserveStreams(ctx, streams*copiesPerByte, want)
	if err != nil {
		return 0, err
	}
	if got <= 0 {
		return 0, errors.New("no output budget left for this key")
	}
	return got, nil
}

// toolError is a failure the model should see: an MCP tool error, not a
// protocol error.
func toolError(err error) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
}

// Tool inputs and outputs: their JSON schemas are derived from these.
type (
	CreateIn struct {
		Image    string            `json:"image,omitempty" jsonschema:"image of the sandbox; bothy's default (bothy/base) when absent"`
		Env      map[string]string `json:"env,omitempty" jsonschema:"environment of every command in the sandbox"`
		MemoryMB int64             `json:"memory_mb,omitempty" jsonschema:"memory limit in MiB"`
	}
	SandboxOut struct {
		ID    string `json:"id"`
		State string `json:"state"`
		Image string `json:"image"`
	}
	ListOut struct {
		Sandboxes []SandboxOut `json:"sandboxes"`
	}
	IDIn struct {
		ID string `json:"id" jsonschema:"the sandbox's ID"`
	}
	ExecIn struct {
		ID        string   `json:"id" jsonschema:"the sandbox's ID"`
		Cmd       []string `json:"cmd,omitempty" jsonschema:"program and arguments; or give shell"`
		Shell     string   `json:"shell,omitempty" jsonschema:"a command line for /bin/sh -c"`
		Cwd       string   `json:"cwd,omitempty"`
		TimeoutMs int64    `json:"timeout_ms,omitempty" jsonschema:"kill the command after this long (default and most: 10 minutes)"`
	}
	ExecOut struct {
		ExitCode       int    `json:"exit_code"`
		Stdout         string `json:"stdout"`
		StdoutEncoding string `json:"stdout_encoding,omitempty" jsonschema:"base64 when stdout is not text (or text that JSON would inflate)"`
		Stderr         string `json:"stderr"`
		StderrEncoding string `json:"stderr_encoding,omitempty" jsonschema:"base64 when stderr is not text"`
		Truncated      bool   `json:"truncated,omitempty" jsonschema:"output went past what one answer holds"`
	}
	ReadIn struct {
		ID   string `json:"id"`
		Path string `json:"path" jsonschema:"absolute path of a file"`
	}
	ReadOut struct {
		Content  string `json:"content"`
		Encoding string `json:"encoding,omitempty" jsonschema:"base64 when the file is not text"`
	}
	WriteIn struct {
		ID      string `json:"id"`
		Path    string `json:"path" jsonschema:"absolute path; missing directories are made"`
		Content string `json:"content"`
	}
	ListFilesIn struct {
		ID   string `json:"id"`
		Path string `json:"path" jsonschema:"absolute path of a directory"`
	}
	EntryOut struct {
		Name string `json:"name"`
		Type string `json:"type"`
		Size int64  `json:"size"`
	}
	ListFilesOut struct {
		Entries []EntryOut `json:"entries"`
	}
	DoneOut struct {
		Done bool `json:"done"`
	}
	StartIn struct {
		ID    string `json:"id"`
		Shell string `json:"shell" jsonschema:"a command line for /bin/sh -c, run in the background (a server, a watcher, a build)"`
		Tag   string `json:"tag,omitempty"`
	}
	ProcessOut struct {
		PID      int    `json:"pid"`
		State    string `json:"state"`
		ExitCode *int   `json:"exit_code,omitempty"`
	}
	LogsIn struct {
		ID   string `json:"id"`
		PID  int    `json:"pid"`
		From int64  `json:"from,omitempty" jsonschema:"byte offset to read from; the next call passes the answer's next"`
	}
	LogsOut struct {
		Output   string `json:"output"`
		Encoding string `json:"encoding,omitempty" jsonschema:"base64 when the output is not text"`
		Next     int64  `json:"next"`
		State    string `json:"state"`
	}
	RunIn struct {
		Runtime   string `json:"runtime" jsonschema:"python, node or bash"`
		Code      string `json:"code"`
		TimeoutMs int64  `json:"timeout_ms,omitempty"`
	}
	ExposeIn struct {
		ID     string `json:"id"`
		Port   int    `json:"port" jsonschema:"a TCP port a server listens on in the sandbox"`
		Public bool   `json:"public,omitempty" jsonschema:"reachable without the port's token (host form)"`
	}
	PortOut struct {
		Port  int    `json:"port"`
		Token string `json:"token"`
	}
	SnapshotIn struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	}
	SnapshotOut struct {
		ID   string `json:"id"`
		Size int64  `json:"size"`
	}
	RestoreIn struct {
		ID       string `json:"id" jsonschema:"the sandbox to roll back, in place"`
		Snapshot string `json:"snapshot"`
	}
)

func newServer(d Deps, owner string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "bothy", Version: d.Version}, nil)
	o := d.Orchestrator
	toOut := func(sb orchestrator.Sandbox) SandboxOut {
		return SandboxOut{ID: sb.ID, State: string(sb.State), Image: sb.Image}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "create_sandbox", Description: "Create a persistent Linux sandbox (a container of your own) and answer its ID."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in CreateIn) (*mcp.CallToolResult, SandboxOut, error) {
			ctx = callCtx(ctx)
			sb, _, err := o.Create(ctx, owner, orchestrator.CreateOptions{Image: in.Image, Env: in.Env, MemoryMB: in.MemoryMB})
			if err != nil {
				return toolError(err), SandboxOut{}, nil
			}
			return nil, toOut(sb), nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "list_sandboxes", Description: "List your sandboxes."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, ListOut, error) {
			ctx = callCtx(ctx)
			list, _, err := o.List(ctx, owner, orchestrator.ListFilter{Limit: 1000})
			if err != nil {
				return toolError(err), ListOut{}, nil
			}
			out := ListOut{Sandboxes: []SandboxOut{}}
			for _, sb := range list {
				out.Sandboxes = append(out.Sandboxes, toOut(sb))
			}
			return nil, out, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "delete_sandbox", Description: "Delete a sandbox and its files."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in IDIn) (*mcp.CallToolResult, DoneOut, error) {
			ctx = callCtx(ctx)
			if err := o.Delete(ctx, owner, in.ID); err != nil {
				return toolError(err), DoneOut{}, nil
			}
			return nil, DoneOut{Done: true}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "exec", OutputSchema: schemaFor[ExecOut](),
		Description: "Run a command in a sandbox and answer its exit code and output (the first MiB of each stream)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ExecIn) (*mcp.CallToolResult, any, error) {
			ctx = callCtx(ctx)
			if in.TimeoutMs <= 0 || in.TimeoutMs > maxExecTime {
				in.TimeoutMs = maxExecTime
			}
			limit, err := reserveOutput(ctx, 2, maxToolOutput)
			if err != nil {
				return toolError(err), nil, nil
			}
			stdout, stderr := newCapped(ctx, limit), newCapped(ctx, limit)
			res, err := o.Exec(ctx, owner, in.ID, orchestrator.ExecOptions{Argv: in.Cmd, Shell: in.Shell, Cwd: in.Cwd,
				Timeout: time.Duration(in.TimeoutMs) * time.Millisecond, MaxOutput: limit}, nil, stdout, stderr)
			if err != nil {
				return toolError(err), nil, nil
			}
			if res.StartError != "" {
				_, _ = stderr.Write([]byte(res.StartError))
			}
			return outputs(res.ExitCode, res.Truncated, stdout, stderr), nil, nil
		})
	target := func(id string) fsapi.Target { return fsapi.Target{Owner: owner, Sandbox: id} }
	mcp.AddTool(s, &mcp.Tool{Name: "read_file", OutputSchema: schemaFor[ReadOut](), Description: "Read a file of a sandbox (at most 1 MiB; base64 when it is not text)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ReadIn) (*mcp.CallToolResult, any, error) {
			ctx = callCtx(ctx)
			limit, err := reserveOutput(ctx, 1, maxToolOutput)
			if err != nil {
				return toolError(err), nil, nil
			}
			buf := newCapped(ctx, limit)
			l, err := d.Files.Read(ctx, target(in.ID), fsapi.ReadOptions{Path: in.Path, Length: limit},
				func(fsapi.FileInfo) (io.Writer, error) { return buf, nil })
			if err == nil && l != nil {
				err = fmt.Errorf("%s is a directory: use list_files", in.Path)
			}
			if err != nil {
				return toolError(err), nil, nil
			}
			out := ReadOut{}
			out.Content, out.Encoding = encode(buf.Bytes())
			return textResult(out, out.Content), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "write_file", Description: "Write a text file in a sandbox, replacing what was there."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in WriteIn) (*mcp.CallToolResult, DoneOut, error) {
			ctx = callCtx(ctx)
			if _, err := d.Files.Write(ctx, target(in.ID), in.Path, 0, true, strings.NewReader(in.Content)); err != nil {
				return toolError(err), DoneOut{}, nil
			}
			return nil, DoneOut{Done: true}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "list_files", Description: "List a directory of a sandbox."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ListFilesIn) (*mcp.CallToolResult, ListFilesOut, error) {
			ctx = callCtx(ctx)
			l, err := d.Files.Read(ctx, target(in.ID), fsapi.ReadOptions{Path: in.Path, Length: -1},
				func(fsapi.FileInfo) (io.Writer, error) { return nil, errors.New(in.Path + " is a file: use read_file") })
			if err != nil {
				return toolError(err), ListFilesOut{}, nil
			}
			out := ListFilesOut{Entries: []EntryOut{}}
			for _, e := range l.Entries {
				out.Entries = append(out.Entries, EntryOut{Name: e.Name, Type: string(e.Type), Size: e.Size})
			}
			return nil, out, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "start_process", Description: "Start a background process in a sandbox; it runs on after this call (read it with process_logs)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in StartIn) (*mcp.CallToolResult, ProcessOut, error) {
			ctx = callCtx(ctx)
			p, err := d.Processes.Start(ctx, owner, in.ID, process.StartOptions{Shell: in.Shell, Tag: in.Tag})
			if err != nil {
				return toolError(err), ProcessOut{}, nil
			}
			return nil, ProcessOut{PID: p.PID, State: p.State, ExitCode: p.ExitCode}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "process_logs", OutputSchema: schemaFor[LogsOut](),
		Description: "Read a background process's output so far (stdout and stderr together, at most 1 MiB), from a byte offset."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in LogsIn) (*mcp.CallToolResult, any, error) {
			ctx = callCtx(ctx)
			limit, err := reserveOutput(ctx, 1, maxToolOutput)
			if err != nil {
				return toolError(err), nil, nil
			}
			buf := newCapped(ctx, limit)
			out := LogsOut{Next: in.From}
			err = d.Processes.Logs(ctx, owner, in.ID, in.PID, in.From, false, func(r process.Record) error {
				switch r.Type {
				case process.RecordOutput:
					if int64(buf.Len()+len(r.Data)) > limit {
						return errEnough
					}
					_, _ = buf.Write(r.Data)
					out.Next = r.Offset + int64(len(r.Data))
				case process.RecordGap:
					out.Next = r.To
				case process.RecordEnd:
					if r.Info != nil {
						out.State = r.Info.State
					}
				}
				return nil
			})
			if err != nil && !errors.Is(err, errEnough) {
				return toolError(err), nil, nil
			}
			out.Output, out.Encoding = encode(buf.Bytes())
			return textResult(out, out.Output), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "run_code", OutputSchema: schemaFor[ExecOut](),
		Description: "Run a short piece of code (python, node or bash) in a fresh, locked-down runner, not in a sandbox."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in RunIn) (*mcp.CallToolResult, any, error) {
			ctx = callCtx(ctx)
			limit, err := reserveOutput(ctx, 2, maxToolOutput)
			if err != nil {
				return toolError(err), nil, nil
			}
			stdout, stderr := newCapped(ctx, limit), newCapped(ctx, limit)
			res, err := d.Isolate.Run(ctx, owner, isolate.RunOptions{Runtime: in.Runtime, Code: in.Code,
				Timeout: time.Duration(in.TimeoutMs) * time.Millisecond, MaxOutput: limit}, stdout, stderr)
			if err != nil {
				return toolError(err), nil, nil
			}
			return outputs(res.ExitCode, res.Truncated, stdout, stderr), nil, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "expose_port", Description: "Expose a port of a sandbox through bothy (docs/ports.md), with a token of its own."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ExposeIn) (*mcp.CallToolResult, PortOut, error) {
			ctx = callCtx(ctx)
			p, err := d.Ports.Expose(ctx, owner, in.ID, in.Port, in.Public)
			if err != nil {
				return toolError(err), PortOut{}, nil
			}
			return nil, PortOut{Port: p.Port, Token: p.Token}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "create_snapshot", Description: "Checkpoint a sandbox's filesystem as a snapshot."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in SnapshotIn) (*mcp.CallToolResult, SnapshotOut, error) {
			ctx = callCtx(ctx)
			id, err := o.Checkpoint(ctx, owner, in.ID, in.Name, nil)
			var sn snapshot.Snapshot
			if err == nil {
				sn, err = d.Snapshots.Get(ctx, owner, id)
			}
			if err != nil {
				return toolError(err), SnapshotOut{}, nil
			}
			return nil, SnapshotOut{ID: sn.ID, Size: sn.Size}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "restore_snapshot", Description: "Roll a sandbox back to a snapshot, in place (same ID)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in RestoreIn) (*mcp.CallToolResult, SandboxOut, error) {
			ctx = callCtx(ctx)
			sb, err := o.RestoreSnapshot(ctx, owner, in.ID, in.Snapshot)
			if err != nil {
				return toolError(err), SandboxOut{}, nil
			}
			return nil, toOut(sb), nil
		})
	return s
}

// capped keeps the first limit bytes written to it.
type capped struct {
	bytes.Buffer
	limit     int64
	truncated bool
	count     *atomic.Int64
}

func (c *capped) Write(p []byte) (int, error) {
	room := c.limit - int64(c.Len())
	if int64(len(p)) > room {
		c.truncated = true
		p = p[:max(room, 0)]
	}
	c.Buffer.Write(p)
	if c.count != nil {
		c.count.Add(int64(len(p)))
	}
	return len(p), nil
}

// errEnough stops a read once an answer holds all it may.
var errEnough = errors.New("enough")

// encode is b as a JSON string's value, in the encoding that costs least:
// text, or base64 when b is not UTF-8 or JSON would inflate it.
func encode(b []byte) (string, string) {
	enc := api.OutputEncoding(b)
	if enc == api.EncodingBase64 {
		return base64.StdEncoding.EncodeToString(b), enc
	}
	return string(b), enc
}

// outputs is a command's result: structured for clients that read it, and
// as text for the model (the output itself, not the result's JSON again).
func outputs(code int, truncated bool, stdout, stderr *capped) *mcp.CallToolResult {
	out := ExecOut{ExitCode: code, Truncated: truncated || stdout.truncated || stderr.truncated}
	out.Stdout, out.StdoutEncoding = encode(stdout.Bytes())
	out.Stderr, out.StderrEncoding = encode(stderr.Bytes())
	var text strings.Builder
	text.Grow(len(out.Stdout) + len(out.Stderr) + 128)
	fmt.Fprintf(&text, "exit code %d\n", code)
	for _, o := range []struct{ name, data, enc string }{{"stdout", out.Stdout, out.StdoutEncoding}, {"stderr", out.Stderr, out.StderrEncoding}} {
		if o.data == "" {
			continue
		}
		fmt.Fprintf(&text, "--- %s", o.name)
		if o.enc != "" {
			fmt.Fprintf(&text, " (%s)", o.enc)
		}
		text.WriteString(" ---\n")
		text.WriteString(o.data)
		if !strings.HasSuffix(o.data, "\n") {
			text.WriteString("\n")
		}
	}
	if out.Truncated {
		text.WriteString("(output truncated)\n")
	}
	return textResult(out, text.String())
}

// textResult answers out as the structured result, with text for the model.
func textResult(out any, text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{StructuredContent: out, Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

// schemaFor is the JSON schema of T, for a tool's declared output.
func schemaFor[T any]() *jsonschema.Schema {
	sc, err := jsonschema.For[T](nil)
	if err != nil {
		panic(err)
	}
	return sc
}
