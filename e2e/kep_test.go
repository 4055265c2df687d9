package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// TestKEPConformanceInASandbox: a sandbox made with "kep" serves
// agent-sandbox's standard runtime interface, and the conformance test
// written from its spec (agent/kep/conformance, driven with agent-sandbox's
// own gRPC client) passes inside it, where an SDK finds the interface; the
// REST service is reached from outside through the port proxy with the
// caller's key; a sandbox made without it keeps 8080 and 9090 free.
func TestKEPConformanceInASandbox(t *testing.T) {
	testenv.Docker(t)
	// The conformance test, as a static binary to run in the sandbox.
	bin := filepath.Join(t.TempDir(), "kep-conformance")
	build := exec.Command("go", "test", "-c", "-o", bin, "github.com/bothy/bothy/agent/kep/conformance")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the conformance test: %v: %s", err, out)
	}
	const key = "e2e-kep-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key)
	c := api.NewClient(d.url, key)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{KEP: true}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !sb.KEP {
		t.Fatalf("the sandbox does not say it serves the interface: %+v", sb)
	}
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := c.WriteFile(ctx, sb.ID, "/tmp/kep-conformance", f, api.WriteOptions{Mode: "0755", Size: -1}); err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{
		Cmd:       []string{"/tmp/kep-conformance", "-test.v", "-test.count=1"},
		Env:       map[string]string{"SANDBOXD_REST_ADDR": "127.0.0.1:8080", "SANDBOXD_GRPC_ADDR": "127.0.0.1:9090"},
		TimeoutMs: 300_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the conformance test in the sandbox:\n%s%s", res.Stdout, res.Stderr)
	if res.ExitCode != 0 || !strings.Contains(res.Stdout, "--- PASS: TestFiles") || strings.Contains(res.Stdout, "SKIP") {
		t.Fatalf("the conformance test failed in the sandbox (exit %d)", res.ExitCode)
	}
	// From outside: the REST service through the port proxy, with the key.
	req, _ := http.NewRequest("GET", c.PortURL(sb.ID, 8080, "/v1/metadata"), nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var meta struct {
		Env map[string]string `json:"env"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &meta) != nil || meta.Env["SANDBOX_ID"] != sb.ID {
		t.Fatalf("metadata through the port proxy: %d %s", resp.StatusCode, body)
	}
	// Without a key, nothing (a port not exposed is not found).
	resp, err = http.Get(c.PortURL(sb.ID, 8080, "/v1/health"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the interface without a key: %d", resp.StatusCode)
	}
	// A sandbox made without it keeps the ports free for its own servers.
	plain, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.Exec(ctx, plain.ID, api.ExecRequest{Shell: `python3 -c 'import socket
for p in (8080, 9090):
    s = socket.socket(); s.bind(("127.0.0.1", p)); s.close()
print("free")'`})
	if err != nil || res.ExitCode != 0 || res.Stdout != "free\n" {
		t.Fatalf("the ports of a sandbox without the interface: %v %+v", err, res)
	}
	for _, id := range []string{sb.ID, plain.ID} {
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}
