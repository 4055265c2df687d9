package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// TestMCPOutputIsBudgetedLikeREST: 20 concurrent MCP exec calls whose
// command writes 1 MiB to stdout and 1 MiB (of NUL bytes) to stderr use no
// more of bothy's memory than the same 20 commands through REST: an MCP
// answer comes out of the same output budget, and is encoded once. A
// JSON-RPC batch is refused: one small request may not ask for any number
// of answers.
func TestMCPOutputIsBudgetedLikeREST(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-mcp-memory-key-0123456789abcd"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key,
		"BOTHY_DEFAULT_IMAGE=bothy/busybox")
	peak, _ := memoryCgroupUsage(t, d, 2<<30)
	resetPeak := func() {
		t.Helper()
		p := filepath.Join("/sys/fs/cgroup/memory", fmt.Sprintf("bothy-e2e-%d", d.cmd.Process.Pid), "memory.max_usage_in_bytes")
		if err := os.WriteFile(p, []byte("0"), 0o644); err != nil {
			t.Skipf("no cgroup v1 peak to reset here: %v", err)
		}
	}
	ctx := context.Background()
	c := api.NewClient(d.url, key)
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	const shell = "head -c 1048576 /dev/urandom | base64 | head -c 1048576; head -c 1048576 /dev/zero >&2"
	mcpCall := func(id int) (int, []byte) {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"exec","arguments":{"id":%q,"shell":%q}}}`, id, sb.ID, shell)
		req, _ := http.NewRequest("POST", d.url+"/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	// A batch: refused, whatever it asks for.
	batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/list"}]`
	req, _ := http.NewRequest("POST", d.url+"/mcp", strings.NewReader(batch))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("a JSON-RPC batch: %v %v", resp, err)
	}

	run := func(what string, one func(i int)) int64 {
		t.Helper()
		// A first call of each kind, outside the measure.
		one(0)
		resetPeak()
		base := peak()
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() { defer wg.Done(); one(i + 1) }()
		}
		wg.Wait()
		grew := peak() - base
		t.Logf("%s: 20 concurrent calls of 2 x 1 MiB of output: bothy's memory peaked %d MiB over its start", what, grew>>20)
		return grew
	}
	rest := run("REST", func(int) {
		res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: shell})
		if err != nil || len(res.Stdout) != 1<<20 || len(res.Stderr) != 1<<20 {
			t.Errorf("REST exec: %d, %d bytes, %v", len(res.Stdout), len(res.Stderr), err)
		}
	})
	viaMCP := run("MCP", func(i int) {
		code, b := mcpCall(i)
		var out struct {
			Result struct {
				StructuredContent struct {
					Stdout         string `json:"stdout"`
					Stderr         string `json:"stderr"`
					StderrEncoding string `json:"stderr_encoding"`
				} `json:"structuredContent"`
			} `json:"result"`
		}
		if err := json.Unmarshal(b, &out); err != nil || code != 200 {
			t.Errorf("MCP exec: %d %v %.200s", code, err, b)
			return
		}
		if sc := out.Result.StructuredContent; len(sc.Stdout) != 1<<20 || sc.StderrEncoding != "base64" || !bytes.Equal([]byte(sc.Stderr[:8]), []byte("AAAAAAAA")) {
			t.Errorf("MCP exec: stdout %d bytes, stderr %d bytes in %q", len(sc.Stdout), len(sc.Stderr), sc.StderrEncoding)
		}
	})
	if viaMCP > rest+4<<20 {
		t.Errorf("20 MCP execs took %d MiB, 20 REST execs %d MiB", viaMCP>>20, rest>>20)
	}
}
