package server

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/bothy/bothy/internal/testenv"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestMCPFrontDoorOnTheFakeEngine: the MCP front door's tools through the
// server's one route table, with the official Go SDK's client, in make
// test-unit: a sandbox made, a command run, a file written and read back
// (in a directory of the test's own: the fake engine's agents run on this
// host), a process's output followed, another key's sandbox out of reach
// as a tool error, the sandbox deleted; no key, no session.
func TestMCPFrontDoorOnTheFakeEngine(t *testing.T) {
	t.Parallel()
	f := newFakeFixture(t)
	ctx := context.Background()
	if code, _ := call(t, f.url, http.MethodPost, "/mcp", "", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); code != http.StatusUnauthorized {
		t.Fatalf("MCP without a key: %d", code)
	}
	connect := func(key string) *sdk.ClientSession {
		client := sdk.NewClient(&sdk.Implementation{Name: "bothy-test", Version: "1"}, nil)
		session, err := client.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: f.url + "/mcp",
			HTTPClient: testenv.Bearer(key)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { session.Close() })
		return session
	}
	user, other := connect(f.user), connect(f.admin)
	callTool := func(s *sdk.ClientSession, name string, args map[string]any, out any) *sdk.CallToolResult {
		t.Helper()
		res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: name, Arguments: args})
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
	if res := callTool(user, "create_sandbox", map[string]any{}, &sb); res.IsError || sb.State != "running" {
		t.Fatalf("create_sandbox: %+v %+v", res, sb)
	}
	var ex struct {
		ExitCode int `json:"exit_code"`
		Stdout   string
	}
	if res := callTool(user, "exec", map[string]any{"id": sb.ID, "shell": "echo $((6*7)); exit 3"}, &ex); res.IsError || ex.Stdout != "42\n" || ex.ExitCode != 3 {
		t.Fatalf("exec: %+v %+v", res, ex)
	}
	note := filepath.Join(t.TempDir(), "note.txt")
	if res := callTool(user, "write_file", map[string]any{"id": sb.ID, "path": note, "content": "from MCP\n"}, nil); res.IsError {
		t.Fatalf("write_file: %+v", res)
	}
	var rd struct{ Content string }
	if res := callTool(user, "read_file", map[string]any{"id": sb.ID, "path": note}, &rd); res.IsError || rd.Content != "from MCP\n" {
		t.Fatalf("read_file: %+v %+v", res, rd)
	}
	var proc struct{ PID int }
	if res := callTool(user, "start_process", map[string]any{"id": sb.ID, "shell": "echo started; exec sleep 1000"}, &proc); res.IsError || proc.PID == 0 {
		t.Fatalf("start_process: %+v %+v", res, proc)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var logs struct{ Output string }
		if res := callTool(user, "process_logs", map[string]any{"id": sb.ID, "pid": proc.PID}, &logs); res.IsError {
			t.Fatalf("process_logs: %+v", res)
		} else if logs.Output == "started\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no output from the process")
		}
	}
	// Another key: not found, as a tool error the model sees.
	for name, args := range map[string]map[string]any{
		"exec":           {"id": sb.ID, "shell": "true"},
		"read_file":      {"id": sb.ID, "path": note},
		"delete_sandbox": {"id": sb.ID},
	} {
		if res := callTool(other, name, args, nil); !res.IsError {
			t.Errorf("%s on another key's sandbox: %+v", name, res)
		}
	}
	if res := callTool(user, "delete_sandbox", map[string]any{"id": sb.ID}, nil); res.IsError {
		t.Fatalf("delete_sandbox: %+v", res)
	}
	var list struct{ Sandboxes []any }
	if res := callTool(user, "list_sandboxes", map[string]any{}, &list); res.IsError || len(list.Sandboxes) != 0 {
		t.Fatalf("list after delete: %+v %+v", res, list)
	}
}
