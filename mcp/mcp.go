// Package mcp is sandboxd's MCP front door: an endpoint of the Model Context
// Protocol (Streamable HTTP, on the official Go SDK) whose tools are
// sandboxd's own calls, made as the API key that sends them, with the same
// owner checks and quotas. It holds no logic of its own.
package mcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/sandboxd/sandboxd/fsapi"
	"github.com/sandboxd/sandboxd/isolate"
	"github.com/sandboxd/sandboxd/orchestrator"
	"github.com/sandboxd/sandboxd/ports"
	"github.com/sandboxd/sandboxd/process"
	"github.com/sandboxd/sandboxd/snapshot"
	"github.com/sandboxd/sandboxd/supervisor"
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
	// Version names sandboxd to clients.
	Version string
}

// Limits of what a tool answers in one result.
const (
	maxToolOutput = 1 << 20   // bytes of command output or file content
	maxExecTime   = 10 * 60e3 // milliseconds
)

// Handler serves the MCP endpoint. Every request carries an API key
// ("Authorization: Bearer KEY"), and every request is a session of its own
// (stateless): a session can never act for another key.
func Handler(d Deps) http.Handler {
	h := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
		key, _ := r.Context().Value(keyOf{}).(supervisor.Key)
		return newServer(d, key.ID)
	}, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || strings.TrimSpace(secret) == "" {
			http.Error(w, `{"error":{"code":"unauthenticated","message":"send Authorization: Bearer KEY (a sandboxd API key)"}}`, http.StatusUnauthorized)
			return
		}
		key, err := d.Keys.Authenticate(r.Context(), strings.TrimSpace(secret))
		if err != nil {
			http.Error(w, `{"error":{"code":"unauthenticated","message":"invalid or revoked API key"}}`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyOf{}, key)))
	})
}

type keyOf struct{}

// toolError is a failure the model should see: an MCP tool error, not a
// protocol error.
func toolError(err error) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
}

// Tool inputs and outputs: their JSON schemas are derived from these.
type (
	CreateIn struct {
		Image    string            `json:"image,omitempty" jsonschema:"image of the sandbox; sandboxd's default (sandboxd/base) when absent"`
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
		ExitCode int    `json:"exit_code"`
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
	}
	ReadIn struct {
		ID   string `json:"id"`
		Path string `json:"path" jsonschema:"absolute path of a file"`
	}
	ReadOut struct {
		Content string `json:"content"`
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
		Output string `json:"output"`
		Next   int64  `json:"next"`
		State  string `json:"state"`
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
	s := mcp.NewServer(&mcp.Implementation{Name: "sandboxd", Version: d.Version}, nil)
	o := d.Orchestrator
	toOut := func(sb orchestrator.Sandbox) SandboxOut {
		return SandboxOut{ID: sb.ID, State: string(sb.State), Image: sb.Image}
	}
	mcp.AddTool(s, &mcp.Tool{Name: "create_sandbox", Description: "Create a persistent Linux sandbox (a container of your own) and answer its ID."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in CreateIn) (*mcp.CallToolResult, SandboxOut, error) {
			sb, _, err := o.Create(ctx, owner, orchestrator.CreateOptions{Image: in.Image, Env: in.Env, MemoryMB: in.MemoryMB})
			if err != nil {
				return toolError(err), SandboxOut{}, nil
			}
			return nil, toOut(sb), nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "list_sandboxes", Description: "List your sandboxes."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, ListOut, error) {
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
			if err := o.Delete(ctx, owner, in.ID); err != nil {
				return toolError(err), DoneOut{}, nil
			}
			return nil, DoneOut{Done: true}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "exec", Description: "Run a command in a sandbox and answer its exit code and output (the first MiB of each stream)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ExecIn) (*mcp.CallToolResult, ExecOut, error) {
			if in.TimeoutMs <= 0 || in.TimeoutMs > maxExecTime {
				in.TimeoutMs = maxExecTime
			}
			var stdout, stderr capped
			res, err := o.Exec(ctx, owner, in.ID, orchestrator.ExecOptions{Argv: in.Cmd, Shell: in.Shell, Cwd: in.Cwd,
				Timeout: time.Duration(in.TimeoutMs) * time.Millisecond, MaxOutput: maxToolOutput}, nil, &stdout, &stderr)
			if err != nil {
				return toolError(err), ExecOut{}, nil
			}
			out := ExecOut{ExitCode: res.ExitCode, Stdout: stdout.String(), Stderr: stderr.String()}
			if res.StartError != "" {
				out.Stderr += res.StartError
			}
			return nil, out, nil
		})
	target := func(id string) fsapi.Target { return fsapi.Target{Owner: owner, Sandbox: id} }
	mcp.AddTool(s, &mcp.Tool{Name: "read_file", Description: "Read a text file of a sandbox (at most 1 MiB)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ReadIn) (*mcp.CallToolResult, ReadOut, error) {
			var buf capped
			l, err := d.Files.Read(ctx, target(in.ID), fsapi.ReadOptions{Path: in.Path, Length: maxToolOutput},
				func(fsapi.FileInfo) (io.Writer, error) { return &buf, nil })
			if err == nil && l != nil {
				err = fmt.Errorf("%s is a directory: use list_files", in.Path)
			}
			if err != nil {
				return toolError(err), ReadOut{}, nil
			}
			return nil, ReadOut{Content: buf.String()}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "write_file", Description: "Write a text file in a sandbox, replacing what was there."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in WriteIn) (*mcp.CallToolResult, DoneOut, error) {
			if _, err := d.Files.Write(ctx, target(in.ID), in.Path, 0, true, strings.NewReader(in.Content)); err != nil {
				return toolError(err), DoneOut{}, nil
			}
			return nil, DoneOut{Done: true}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "list_files", Description: "List a directory of a sandbox."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ListFilesIn) (*mcp.CallToolResult, ListFilesOut, error) {
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
			p, err := d.Processes.Start(ctx, owner, in.ID, process.StartOptions{Shell: in.Shell, Tag: in.Tag})
			if err != nil {
				return toolError(err), ProcessOut{}, nil
			}
			return nil, ProcessOut{PID: p.PID, State: p.State, ExitCode: p.ExitCode}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "process_logs", Description: "Read a background process's output so far (stdout and stderr together), from a byte offset."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in LogsIn) (*mcp.CallToolResult, LogsOut, error) {
			var buf capped
			out := LogsOut{Next: in.From}
			err := d.Processes.Logs(ctx, owner, in.ID, in.PID, in.From, false, func(r process.Record) error {
				switch r.Type {
				case process.RecordOutput:
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
			if err != nil {
				return toolError(err), LogsOut{}, nil
			}
			out.Output = buf.String()
			return nil, out, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "run_code", Description: "Run a short piece of code (python, node or bash) in a fresh, locked-down runner, not in a sandbox."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in RunIn) (*mcp.CallToolResult, ExecOut, error) {
			var stdout, stderr capped
			res, err := d.Isolate.Run(ctx, owner, isolate.RunOptions{Runtime: in.Runtime, Code: in.Code,
				Timeout: time.Duration(in.TimeoutMs) * time.Millisecond, MaxOutput: maxToolOutput}, &stdout, &stderr)
			if err != nil {
				return toolError(err), ExecOut{}, nil
			}
			return nil, ExecOut{ExitCode: res.ExitCode, Stdout: stdout.String(), Stderr: stderr.String()}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "expose_port", Description: "Expose a port of a sandbox through sandboxd (docs/ports.md), with a token of its own."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in ExposeIn) (*mcp.CallToolResult, PortOut, error) {
			p, err := d.Ports.Expose(ctx, owner, in.ID, in.Port, in.Public)
			if err != nil {
				return toolError(err), PortOut{}, nil
			}
			return nil, PortOut{Port: p.Port, Token: p.Token}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "create_snapshot", Description: "Checkpoint a sandbox's filesystem as a snapshot."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in SnapshotIn) (*mcp.CallToolResult, SnapshotOut, error) {
			var sn snapshot.Snapshot
			err := o.WithSandbox(ctx, owner, in.ID, func(sb orchestrator.Sandbox) error {
				var err error
				sn, err = d.Snapshots.Create(ctx, owner, snapshot.Source{SandboxID: sb.ID, ContainerID: sb.ContainerID, Image: sb.Image}, in.Name, nil)
				return err
			})
			if err != nil {
				return toolError(err), SnapshotOut{}, nil
			}
			return nil, SnapshotOut{ID: sn.ID, Size: sn.Size}, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "restore_snapshot", Description: "Roll a sandbox back to a snapshot, in place (same ID)."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in RestoreIn) (*mcp.CallToolResult, SandboxOut, error) {
			sn, err := d.Snapshots.Get(ctx, owner, in.Snapshot)
			var sb orchestrator.Sandbox
			if err == nil {
				sb, err = o.Restore(ctx, owner, in.ID, sn.Image)
			}
			if err != nil {
				return toolError(err), SandboxOut{}, nil
			}
			return nil, toOut(sb), nil
		})
	return s
}

// capped keeps the first maxToolOutput bytes written to it.
type capped struct{ bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := maxToolOutput - c.Len(); room > 0 {
		c.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
