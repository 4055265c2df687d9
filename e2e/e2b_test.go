package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
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

// e2bSDK is the folder of E2B's JS SDK and of the test that drives it.
func e2bSDK(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoRoot(), "compat", "e2b", "sdk")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "e2b", "package.json")); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("BOTHY_REQUIRE_DOCKER") != "" {
			t.Fatal("E2B's SDK is not installed: run make e2b-sdk (scripts/e2b-sdk.sh)")
		}
		t.Skip("E2B's SDK is not installed")
	}
	return dir
}

// TestE2BSDK runs E2B's own JS SDK, unchanged and pinned, against bothy,
// pointed at it by E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY alone: a
// whole agent session (compat/e2b/sdk/sdk.test.mjs, under node --test).
func TestE2BSDK(t *testing.T) {
	testenv.Docker(t)
	dir := e2bSDK(t)
	const key = "e2e-e2b-key-0123456789abcdef0123"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key)
	e2bSession(t, d, dir, key)
}

// e2bSession runs the SDK's session (in dir) against the bothy d, whose
// admin key is key.
func e2bSession(t *testing.T, d *daemon, dir, key string) {
	t.Helper()
	cmd := exec.Command("node", "--test", "--test-reporter=spec", "sdk.test.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "E2B_API_URL="+d.url, "E2B_SANDBOX_URL="+d.url, "E2B_API_KEY="+key)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test sdk.test.mjs:\n%s", out)
	if err != nil {
		logs := d.log()
		t.Fatalf("E2B's SDK against bothy: %v\nthe end of bothy's log:\n%s", err, logs[max(0, len(logs)-6000):])
	}
	// The SDK's test killed what it made.
	list, err := api.NewClient(d.url, key).ListSandboxes(context.Background(), api.ListOptions{})
	if err != nil || len(list.Sandboxes) != 0 {
		t.Fatalf("left after the SDK's test: %+v %v", list, err)
	}
}

// TestE2BHostileRequests: bad input through E2B's routes gets the error the
// contract names (e2b-contract.md) and changes nothing: malformed Connect
// envelopes and JSON, unknown RPCs, an oversized message, a wrong or
// missing access token, another key's sandbox, an unknown sandbox.
func TestE2BHostileRequests(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-e2b-hostile-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox")
	ctx := context.Background()
	other, err := api.NewClient(d.url, key).CreateKey(ctx, api.CreateKeyRequest{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, path string, hdr map[string]string, body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, d.url+path, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	type made struct {
		SandboxID       string `json:"sandboxID"`
		EnvdAccessToken string `json:"envdAccessToken"`
	}
	create := func(apiKey string) made {
		t.Helper()
		code, body := send("POST", "/v2/sandboxes", map[string]string{"X-API-KEY": apiKey}, []byte(`{"templateID":"base","metadata":{"who":"`+apiKey[:8]+`"}}`))
		var m made
		if code != 201 || json.Unmarshal([]byte(body), &m) != nil || m.EnvdAccessToken == "" {
			t.Fatalf("create: %d %s", code, body)
		}
		return m
	}
	mine, theirs := create(key), create(other.Secret)
	data1 := func(m made, token string) map[string]string {
		return map[string]string{"E2b-Sandbox-Id": m.SandboxID, "X-Access-Token": token, "Content-Type": "application/json"}
	}
	errorCode := func(body string) string {
		var e struct {
			Code any `json:"code"`
		}
		_ = json.Unmarshal([]byte(body), &e)
		return fmt.Sprint(e.Code)
	}
	envelope := func(msg string, declared int) []byte {
		b := make([]byte, 5, 5+len(msg))
		binary.BigEndian.PutUint32(b[1:], uint32(declared))
		return append(b, msg...)
	}
	startHdr := func(m made) map[string]string {
		h := data1(m, m.EnvdAccessToken)
		h["Content-Type"], h["Connect-Protocol-Version"] = "application/connect+json", "1"
		return h
	}
	big, _ := json.Marshal(map[string]any{"process": map[string]any{"pid": 1}, "input": map[string]any{"stdin": base64.StdEncoding.EncodeToString(make([]byte, 17<<20))}})
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		body               []byte
		status             int
		code               string
	}{
		{"control plane without a key", "GET", "/v2/sandboxes", nil, nil, 401, "401"},
		{"control plane with a wrong key", "GET", "/sandboxes/" + mine.SandboxID, map[string]string{"X-API-KEY": "bothy_wrong-0123456789"}, nil, 401, "401"},
		{"another key's sandbox: info", "GET", "/sandboxes/" + mine.SandboxID, map[string]string{"X-API-KEY": other.Secret}, nil, 404, "404"},
		{"another key's sandbox: kill", "DELETE", "/sandboxes/" + mine.SandboxID, map[string]string{"X-API-KEY": other.Secret}, nil, 404, "404"},
		{"another key's sandbox: connect", "POST", "/v2/sandboxes/" + mine.SandboxID + "/connect", map[string]string{"X-API-KEY": other.Secret}, []byte(`{}`), 404, "404"},
		{"another key's sandbox: pause", "POST", "/sandboxes/" + mine.SandboxID + "/pause", map[string]string{"X-API-KEY": other.Secret}, nil, 404, "404"},
		{"a body that is not JSON", "POST", "/v2/sandboxes", map[string]string{"X-API-KEY": key}, []byte(`{"templateID":`), 400, "400"},
		{"a timeout out of range", "POST", "/sandboxes/" + mine.SandboxID + "/timeout", map[string]string{"X-API-KEY": key}, []byte(`{"timeout":-5}`), 400, "400"},
		{"an unknown control route", "GET", "/v2/templates/x", map[string]string{"X-API-KEY": key}, nil, 404, "404"},
		{"data plane without a token", "POST", "/filesystem.Filesystem/Stat", data1(mine, ""), []byte(`{"path":"/"}`), 401, "unauthenticated"},
		{"data plane with a wrong token", "POST", "/filesystem.Filesystem/Stat", data1(mine, "e2bt_wrong"), []byte(`{"path":"/"}`), 401, "unauthenticated"},
		{"another sandbox's token", "POST", "/filesystem.Filesystem/Stat", data1(mine, theirs.EnvdAccessToken), []byte(`{"path":"/"}`), 401, "unauthenticated"},
		{"files with another sandbox's token", "GET", "/files?path=/etc/hostname", data1(mine, theirs.EnvdAccessToken), nil, 401, "401"},
		{"an unknown sandbox", "POST", "/filesystem.Filesystem/Stat", map[string]string{"E2b-Sandbox-Id": "sb-00000000000000ff", "X-Access-Token": mine.EnvdAccessToken}, []byte(`{"path":"/"}`), 502, "502"},
		{"an unknown RPC", "POST", "/process.Process/Exec", data1(mine, mine.EnvdAccessToken), []byte(`{}`), 404, "unimplemented"},
		{"an unknown service", "POST", "/process.Shell/Start", data1(mine, mine.EnvdAccessToken), []byte(`{}`), 404, "404"},
		{"malformed JSON", "POST", "/filesystem.Filesystem/Stat", data1(mine, mine.EnvdAccessToken), []byte(`{"path":`), 400, "invalid_argument"},
		{"an oversized message", "POST", "/process.Process/SendInput", data1(mine, mine.EnvdAccessToken), big, 429, "resource_exhausted"},
		{"another user's port", "POST", "/filesystem.Filesystem/Stat", map[string]string{"E2b-Sandbox-Id": mine.SandboxID, "E2b-Sandbox-Port": "22", "X-Access-Token": mine.EnvdAccessToken}, []byte(`{"path":"/"}`), 502, "unavailable"},
	} {
		code, body := send(tc.method, tc.path, tc.hdr, tc.body)
		if code != tc.status || errorCode(body) != tc.code {
			t.Errorf("%s: %d %s, want %d with code %s", tc.name, code, body, tc.status, tc.code)
		}
	}
	// Envelopes that lie about their length, or hold no JSON: the stream
	// ends with an error, and no process starts.
	for _, env := range [][]byte{envelope(`{"process":`, 4096), envelope(`not json`, 8), {0, 0, 0}} {
		code, body := send("POST", "/process.Process/Start", startHdr(mine), env)
		if code == 200 && !strings.Contains(body, `"error"`) {
			t.Errorf("a malformed envelope %q: %d %q", env, code, body)
		}
	}
	code, body := send("POST", "/process.Process/List", data1(mine, mine.EnvdAccessToken), []byte(`{}`))
	if code != 200 || strings.Contains(body, "pid") {
		t.Fatalf("processes after the hostile requests: %d %s", code, body)
	}
	// Both sandboxes are still there, each its owner's only one.
	for _, c := range []struct {
		key string
		m   made
	}{{key, mine}, {other.Secret, theirs}} {
		code, body := send("GET", "/v2/sandboxes", map[string]string{"X-API-KEY": c.key}, nil)
		if code != 200 || strings.Count(body, `"sandboxID"`) != 1 || !strings.Contains(body, c.m.SandboxID) {
			t.Fatalf("list of %s: %d %s", c.key[:8], code, body)
		}
		if code, _ := send("DELETE", "/sandboxes/"+c.m.SandboxID, map[string]string{"X-API-KEY": c.key}, nil); code != 204 {
			t.Fatalf("kill: %d", code)
		}
	}
}
