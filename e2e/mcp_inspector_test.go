package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bothy/bothy/internal/testenv"
)

// TestMCPInspector drives /mcp with the MCP Inspector's CLI (from npm, pinned
// by mcp/inspector/package-lock.json): a client nobody here wrote lists the
// tools, creates a sandbox, runs Python in it, writes and reads a file, and
// deletes it; without a key it is refused.
func TestMCPInspector(t *testing.T) {
	testenv.Docker(t)
	cli, err := filepath.Abs("../mcp/inspector/node_modules/@modelcontextprotocol/inspector/package.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cli); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BOTHY_REQUIRE_DOCKER") != "" {
			t.Fatal("the MCP Inspector is not installed: run make mcp-inspector")
		}
		t.Skip("the MCP Inspector is not installed (make mcp-inspector)")
	}
	bin := filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(cli))), ".bin", "mcp-inspector")
	const key = "e2e-inspector-key-0123456789abcd"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key)
	home := t.TempDir() // the Inspector keeps a catalog under $HOME

	inspect := func(withKey bool, args ...string) (map[string]any, string, error) {
		t.Helper()
		argv := append([]string{"--cli", d.url + "/mcp"}, args...)
		if withKey {
			argv = append(argv, "--header", "Authorization: Bearer "+key)
		}
		cmd := exec.Command(bin, argv...)
		cmd.Env = append(os.Environ(), "HOME="+home)
		out, err := cmd.Output()
		var res map[string]any
		if err == nil {
			if jerr := json.Unmarshal(out, &res); jerr != nil {
				return nil, string(out), jerr
			}
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return nil, string(out) + string(ee.Stderr), err
		}
		return res, string(out), err
	}
	call := func(tool string, args ...string) map[string]any {
		t.Helper()
		argv := []string{"--method", "tools/call", "--tool-name", tool}
		if len(args) > 0 {
			argv = append(append(argv, "--tool-arg"), args...)
		}
		res, out, err := inspect(true, argv...)
		if err != nil || res["isError"] == true {
			t.Fatalf("%s: %v %s", tool, err, out)
		}
		sc, _ := res["structuredContent"].(map[string]any)
		return sc
	}

	res, out, err := inspect(true, "--method", "tools/list")
	if err != nil {
		t.Fatalf("tools/list: %v %s", err, out)
	}
	var names []string
	for _, tool := range res["tools"].([]any) {
		names = append(names, tool.(map[string]any)["name"].(string))
	}
	for _, want := range []string{"create_sandbox", "list_sandboxes", "delete_sandbox", "exec", "read_file", "write_file", "list_files",
		"start_process", "process_logs", "expose_port", "run_code", "create_snapshot", "restore_snapshot"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("tools/list lacks %s: %v", want, names)
		}
	}

	id, _ := call("create_sandbox")["id"].(string)
	if id == "" {
		t.Fatal("create_sandbox gave no id")
	}
	if got := call("exec", "id="+id, "shell=python3 -c 'print(6*7)'"); got["stdout"] != "42\n" || got["exit_code"] != float64(0) {
		t.Fatalf("exec: %v", got)
	}
	call("write_file", "id="+id, "path=/tmp/inspector.txt", "content=written by the inspector")
	if got := call("read_file", "id="+id, "path=/tmp/inspector.txt"); got["content"] != "written by the inspector" {
		t.Fatalf("read_file: %v", got)
	}
	call("delete_sandbox", "id="+id)

	// Without a key the endpoint answers 401, which the Inspector takes for
	// an authorization it cannot do here.
	if _, out, err := inspect(false, "--method", "tools/list"); err == nil || !strings.Contains(out, "auth") {
		t.Fatalf("tools/list without a key: %v %s", err, out)
	}
}
