package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
)

func TestPortsProxyExposeAndWait(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	var e *api.Error

	// Expose: a record with a token; twice is a conflict; not a port is 400.
	p, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: 8000})
	if err != nil || p.Port != 8000 || !strings.HasPrefix(p.Token, "pt_") || !strings.HasSuffix(p.PathURL, "/ports/8000/") || !strings.HasPrefix(p.URL, "http://8000-"+sb.ID+"."+previewDomain+":") {
		t.Fatalf("expose: %+v %v", p, err)
	}
	if _, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: 8000}); !errors.As(err, &e) || e.Status != 409 {
		t.Fatalf("expose twice: %v", err)
	}
	for _, port := range []int{0, 70000} {
		if _, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: port}); !errors.As(err, &e) || e.Status != 400 {
			t.Fatalf("expose port %d: %v", port, err)
		}
	}

	// Nothing listens yet: a clear 502, and a wait that runs out says so.
	get := func(path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.PortURL(sb.ID, 8000, path), nil)
		req.Header.Set("Authorization", "Bearer "+f.user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/")
	var env api.ErrorEnvelope
	if resp.StatusCode != http.StatusBadGateway || json.Unmarshal([]byte(body), &env) != nil ||
		env.Error.Code != api.CodeNotListening || env.Error.Message != "nothing listens on port 8000 in sandbox "+sb.ID {
		t.Fatalf("closed port: %d %s", resp.StatusCode, body)
	}
	if err := c.WaitPort(ctx, sb.ID, 8000, 100*time.Millisecond); !errors.As(err, &e) || e.Status != http.StatusBadGateway {
		t.Fatalf("wait that runs out: %v", err)
	}

	// A server in the sandbox, on its loopback only, reached through the
	// agent channel.
	setup := "mkdir -p /www && echo hello > /www/index.html && head -c 52428800 /dev/urandom > /www/big && sha256sum /www/big | cut -d' ' -f1 > /www/big.sum"
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: setup}); err != nil || res.ExitCode != 0 {
		t.Fatalf("setup: %+v %v", res, err)
	}
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "exec httpd -f -p 127.0.0.1:8000 -h /www", Tag: "httpd"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPort(ctx, sb.ID, 8000, time.Minute); err != nil {
		t.Fatalf("wait for the server: %v", err)
	}
	if resp, body := get("/index.html"); resp.StatusCode != 200 || body != "hello\n" {
		t.Fatalf("through the proxy: %d %q", resp.StatusCode, body)
	}
	resp, body = get("/big")
	sum := sha256.Sum256([]byte(body))
	_, want := get("/big.sum")
	if resp.StatusCode != 200 || len(body) != 50<<20 || hex.EncodeToString(sum[:]) != strings.TrimSpace(want) {
		t.Fatalf("50 MiB through the proxy: %d, %d bytes, sha256 %x, want %s", resp.StatusCode, len(body), sum, want)
	}
	if resp, _ := get("/missing"); resp.StatusCode != 404 || resp.Header.Get("X-Bothy-Error") != "" {
		t.Fatalf("the server's own 404: %d %v", resp.StatusCode, resp.Header)
	}

	// Server-sent events go out as they come: the second event is not
	// written until the test has read the first.
	sse := "#!/bin/sh\nprintf 'Content-Type: text/event-stream\\r\\n\\r\\n'\necho 'data: one'; echo\n" +
		"while [ ! -f /tmp/go ]; do sleep 0.05; done\necho 'data: two'; echo\n"
	if _, err := c.WriteFile(ctx, sb.ID, "/www/cgi-bin/sse", strings.NewReader(sse), api.WriteOptions{Mode: "0755", Parents: true}); err != nil {
		t.Fatal(err)
	}
	sseCtx, sseCancel := context.WithTimeout(ctx, time.Minute)
	defer sseCancel()
	sseReq, _ := http.NewRequestWithContext(sseCtx, http.MethodGet, c.PortURL(sb.ID, 8000, "/cgi-bin/sse"), nil)
	sseReq.Header.Set("Authorization", "Bearer "+f.user)
	sseResp, err := http.DefaultClient.Do(sseReq)
	if err != nil {
		t.Fatal(err)
	}
	events := bufio.NewReader(sseResp.Body)
	readEvent := func(want string) {
		t.Helper()
		for {
			line, err := events.ReadString('\n')
			if err != nil {
				t.Fatalf("events: %v before %q", err, want)
			}
			if strings.TrimSpace(line) == want {
				return
			}
		}
	}
	readEvent("data: one")
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "touch /tmp/go"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("touch: %+v %v", res, err)
	}
	readEvent("data: two")
	sseResp.Body.Close()

	// An upgrade (as a WebSocket's) becomes a tunnel both ways: a server
	// that answers 101 and then echoes.
	up := "#!/bin/sh\nwhile IFS= read -r line; do case \"$line\" in ''|\"$(printf '\\r')\") break;; esac; done\n" +
		"printf 'HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: echo\\r\\nConnection: Upgrade\\r\\n\\r\\n'\nexec cat\n"
	if _, err := c.WriteFile(ctx, sb.ID, "/up.sh", strings.NewReader(up), api.WriteOptions{Mode: "0755"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "exec nc -ll -p 8001 -e /up.sh"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPort(ctx, sb.ID, 8001, time.Minute); err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(conn, "GET /v1/sandboxes/%s/ports/8001/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n", sb.ID, f.user)
	br := bufio.NewReader(conn)
	upResp, err := http.ReadResponse(br, nil)
	if err != nil || upResp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %+v %v", upResp, err)
	}
	for _, msg := range []string{"ping\n", "second message\n"} {
		fmt.Fprint(conn, msg)
		if line, err := br.ReadString('\n'); err != nil || line != msg {
			t.Fatalf("echo through the tunnel: %q %v", line, err)
		}
	}

	// Another key reaches nothing; the list and unexpose.
	other := api.NewClient(f.url, f.admin)
	req, _ := http.NewRequest(http.MethodGet, c.PortURL(sb.ID, 8000, "/index.html"), nil)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 404 {
		t.Fatalf("another key through the proxy: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if _, err := other.ListPorts(ctx, sb.ID); !api.IsNotFound(err) {
		t.Fatalf("another key's list: %v", err)
	}
	// The host form takes the port's token, and nothing else: not the API
	// key, not the token of another sandbox's port.
	otherSb := mustCreate(t, c)
	otherPort, err := c.ExposePort(ctx, otherSb.ID, api.ExposePortRequest{Port: 8000})
	if err != nil {
		t.Fatal(err)
	}
	viaHost := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, f.url+"/index.html", nil)
		req.Host = "8000-" + sb.ID + "." + previewDomain
		req.Header.Set("Authorization", "Bearer "+f.user)
		req.Header.Set("X-Bothy-Port-Token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := viaHost(p.Token); code != 200 || body != "hello\n" {
		t.Fatalf("host form: %d %q", code, body)
	}
	for _, token := range []string{"", otherPort.Token, f.user} {
		if code, body := viaHost(token); code != 401 {
			t.Fatalf("host form with token %q: %d %q", token, code, body)
		}
	}
	// The path form takes the API key, or without one the port's token
	// (header or query), and not another port's.
	viaPath := func(hdr, query string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.PortURL(sb.ID, 8000, "/index.html")+query, nil)
		if hdr != "" {
			req.Header.Set("X-Bothy-Port-Token", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := viaPath(p.Token, ""); code != 200 || body != "hello\n" {
		t.Fatalf("path form with the port's token: %d %q", code, body)
	}
	if code, body := viaPath("", "?bothy_token="+p.Token); code != 200 || body != "hello\n" {
		t.Fatalf("path form with the port's token in the query: %d %q", code, body)
	}
	for _, token := range []string{"", otherPort.Token} {
		if code, body := viaPath(token, ""); code != 401 {
			t.Fatalf("path form with token %q: %d %q", token, code, body)
		}
	}
	// The preview host owns all of its paths: none of bothy's routes
	// (REST, MCP, E2B's planes) answers there, whatever the path or header.
	owned := "for p in mcp sandboxes templates v1/sandboxes v2/sandboxes; do mkdir -p /www/$(dirname $p) && echo \"server:$p\" > /www/$p; done"
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: owned}); err != nil || res.ExitCode != 0 {
		t.Fatalf("owned paths: %+v %v", res, err)
	}
	for _, tc := range []struct{ path, header string }{
		{"/mcp", ""}, {"/sandboxes", ""}, {"/templates", ""}, {"/v1/sandboxes", ""}, {"/v2/sandboxes", ""},
		{"/mcp", "E2b-Sandbox-Id"},
	} {
		req, _ := http.NewRequest(http.MethodGet, f.url+tc.path, nil)
		req.Host = "8000-" + sb.ID + "." + previewDomain
		req.Header.Set("X-Bothy-Port-Token", p.Token)
		req.Header.Set("Authorization", "Bearer "+f.user)
		if tc.header != "" {
			req.Header.Set(tc.header, sb.ID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "server:"+strings.TrimPrefix(tc.path, "/")+"\n" {
			t.Fatalf("preview host, %s %s: %d %q, want the sandbox's server's answer", tc.path, tc.header, resp.StatusCode, b)
		}
	}

	list, err := c.ListPorts(ctx, sb.ID)
	if err != nil || len(list.Ports) != 1 || list.Ports[0].Port != 8000 || list.Ports[0].Token != p.Token {
		t.Fatalf("list: %+v %v", list, err)
	}
	if err := c.UnexposePort(ctx, sb.ID, 8000); err != nil {
		t.Fatal(err)
	}
	if err := c.UnexposePort(ctx, sb.ID, 8000); !api.IsNotFound(err) {
		t.Fatalf("unexpose twice: %v", err)
	}
	if code, _ := viaHost(p.Token); code != 404 {
		t.Fatalf("host form of a port no longer exposed: %d", code)
	}
}
