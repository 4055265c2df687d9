package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/bothy/bothy/internal/testenv"
)

// TestMCP is an MCP client session, with the official Go SDK's client
// over Streamable HTTP: initialize, list the tools, create a sandbox, run
// Python in it, write and read a file, delete it; without a key, nothing.
func TestMCP(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-mcp-key-0123456789abcdef0123"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key)
	mcpSession(t, d, key)
}

// mcpSession drives the bothy d, whose admin key is key, with the MCP SDK's
// client.
func mcpSession(t *testing.T, d *daemon, key string) {
	t.Helper()
	ctx := context.Background()

	resp, err := http.Post(d.url+"/mcp", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("MCP without a key: %d", resp.StatusCode)
	}

	client := mcp.NewClient(&mcp.Implementation{Name: "bothy-e2e", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: d.url + "/mcp",
		HTTPClient: testenv.Bearer(key)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tool := range tools.Tools {
		if tool.InputSchema == nil {
			t.Errorf("tool %s has no input schema", tool.Name)
		}
		names[tool.Name] = true
	}
	for _, want := range []string{"create_sandbox", "list_sandboxes", "delete_sandbox", "exec", "read_file", "write_file", "list_files", "start_process", "process_logs", "run_code", "expose_port", "create_snapshot", "restore_snapshot"} {
		if !names[want] {
			t.Errorf("no tool %s: %v", want, names)
		}
	}
	call := func(name string, args map[string]any, out any) *mcp.CallToolResult {
		t.Helper()
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if out != nil && !res.IsError {
			b, _ := json.Marshal(res.StructuredContent)
			if err := json.Unmarshal(b, out); err != nil {
				t.Fatalf("%s: %v in %s", name, err, b)
			}
		}
		return res
	}
	var sb struct{ ID, State string }
	if res := call("create_sandbox", map[string]any{}, &sb); res.IsError || sb.State != "running" {
		t.Fatalf("create_sandbox: %+v %+v", res, sb)
	}
	var ex struct {
		ExitCode int `json:"exit_code"`
		Stdout   string
	}
	if res := call("exec", map[string]any{"id": sb.ID, "cmd": []string{"python3", "-c", "print(6*7)"}}, &ex); res.IsError || ex.Stdout != "42\n" || ex.ExitCode != 0 {
		t.Fatalf("exec: %+v %+v", res, ex)
	}
	if res := call("write_file", map[string]any{"id": sb.ID, "path": "/tmp/mcp/note.txt", "content": "from MCP\n"}, nil); res.IsError {
		t.Fatalf("write_file: %+v", res)
	}
	var rd struct{ Content string }
	if res := call("read_file", map[string]any{"id": sb.ID, "path": "/tmp/mcp/note.txt"}, &rd); res.IsError || rd.Content != "from MCP\n" {
		t.Fatalf("read_file: %+v %+v", res, rd)
	}
	var ls struct{ Entries []struct{ Name string } }
	if res := call("list_files", map[string]any{"id": sb.ID, "path": "/tmp/mcp"}, &ls); res.IsError || len(ls.Entries) != 1 || ls.Entries[0].Name != "note.txt" {
		t.Fatalf("list_files: %+v %+v", res, ls)
	}
	var proc struct{ PID int }
	if res := call("start_process", map[string]any{"id": sb.ID, "shell": "echo started; sleep 1000"}, &proc); res.IsError || proc.PID == 0 {
		t.Fatalf("start_process: %+v %+v", res, proc)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var logs struct{ Output string }
		if res := call("process_logs", map[string]any{"id": sb.ID, "pid": proc.PID}, &logs); res.IsError {
			t.Fatalf("process_logs: %+v", res)
		} else if logs.Output == "started\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no output from the process")
		}
	}
	// A checkpoint, a change, and a roll back to it.
	var snap struct{ ID string }
	if res := call("create_snapshot", map[string]any{"id": sb.ID, "name": "before"}, &snap); res.IsError || snap.ID == "" {
		t.Fatalf("create_snapshot: %+v %+v", res, snap)
	}
	call("write_file", map[string]any{"id": sb.ID, "path": "/tmp/mcp/note.txt", "content": "changed\n"}, nil)
	if res := call("restore_snapshot", map[string]any{"id": sb.ID, "snapshot": snap.ID}, nil); res.IsError {
		t.Fatalf("restore_snapshot: %+v", res)
	}
	if res := call("read_file", map[string]any{"id": sb.ID, "path": "/tmp/mcp/note.txt"}, &rd); res.IsError || rd.Content != "from MCP\n" {
		t.Fatalf("after the restore: %+v %+v", res, rd)
	}
	var port struct {
		Port  int
		Token string
	}
	if res := call("expose_port", map[string]any{"id": sb.ID, "port": 8000}, &port); res.IsError || port.Port != 8000 || !strings.HasPrefix(port.Token, "pt_") {
		t.Fatalf("expose_port: %+v %+v", res, port)
	}
	var run struct{ Stdout string }
	if res := call("run_code", map[string]any{"runtime": "python", "code": "print(6*7)"}, &run); res.IsError || run.Stdout != "42\n" {
		t.Fatalf("run_code: %+v %+v", res, run)
	}
	// A failure is a tool error the model sees, not a protocol error.
	if res := call("read_file", map[string]any{"id": sb.ID, "path": "/tmp/mcp/missing"}, nil); !res.IsError {
		t.Fatalf("reading a missing file: %+v", res)
	}
	if res := call("exec", map[string]any{"id": "sb-00000000000000ff", "shell": "true"}, nil); !res.IsError {
		t.Fatalf("exec in a sandbox that is not there: %+v", res)
	}
	if res := call("delete_sandbox", map[string]any{"id": sb.ID}, nil); res.IsError {
		t.Fatalf("delete_sandbox: %+v", res)
	}
	var list struct{ Sandboxes []any }
	if res := call("list_sandboxes", map[string]any{}, &list); res.IsError || len(list.Sandboxes) != 0 {
		t.Fatalf("list after delete: %+v %+v", res, list)
	}
}
