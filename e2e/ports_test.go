package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// wsEcho is a WebSocket echo server in Python's standard library: it
// answers the handshake and sends every data frame back.
const wsEcho = `import base64, hashlib, socket, struct, threading
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def serve(c):
    f = c.makefile("rb")
    key = ""
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "sec-websocket-key":
            key = value.strip()
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    while True:
        h = f.read(2)
        if len(h) < 2:
            break
        op, n = h[0] & 15, h[1] & 127
        if n == 126:
            n = struct.unpack(">H", f.read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", f.read(8))[0]
        mask = f.read(4) if h[1] & 128 else b"\0\0\0\0"
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(f.read(n)))
        if op == 8:
            c.sendall(b"\x88\x00")
            break
        # Fragments go back as they came: the first byte keeps FIN and opcode.
        if n < 126:
            size = bytes([n])
        elif n < 65536:
            size = bytes([126]) + struct.pack(">H", n)
        else:
            size = bytes([127]) + struct.pack(">Q", n)
        head = bytes([h[0]]) + size
        c.sendall(head + data)
    c.close()
s = socket.create_server(("127.0.0.1", 8001))
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
`

// TestWebServerInSandbox is a user's dev server: python3 -m http.server
// started as a background process, reached through the path form with the
// API key and through the host form with the port's token (then a cookie),
// a WebSocket echo server through both, a paused sandbox woken by a request,
// and the server still listed and serving after bothy is killed.
func TestWebServerInSandbox(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-ports-key-0123456789abcdef01"
	const domain = "preview.test"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_PREVIEW_DOMAIN=" + domain}
	d := startDaemon(t, listen, data, env...)
	ctx := context.Background()
	c := api.NewClient(d.url, key)
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: "bothy/base"}, "")
	if err != nil {
		t.Fatal(err)
	}
	setup := "mkdir -p /srv && echo hello > /srv/hello.txt && head -c 52428800 /dev/urandom > /srv/big && sha256sum /srv/big | cut -d' ' -f1"
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: setup})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("setup: %+v %v", res, err)
	}
	bigSum := strings.TrimSpace(res.Stdout)
	if _, err := c.WriteFile(ctx, sb.ID, "/srv/ws_echo.py", strings.NewReader(wsEcho), api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	web, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"python3", "-u", "-m", "http.server", "8000"}, Cwd: "/srv", Tag: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"python3", "/srv/ws_echo.py"}, Tag: "ws"}); err != nil {
		t.Fatal(err)
	}

	// The follower sees the server's start line.
	follow, cancel := context.WithTimeout(ctx, 2*time.Minute)
	var started string
	err = c.ProcessLogs(follow, sb.ID, web.PID, 0, true, func(r api.LogRecord) error {
		started += r.Data
		if strings.Contains(started, "Serving HTTP on") {
			cancel()
		}
		return nil
	})
	cancel()
	if !strings.Contains(started, "Serving HTTP on") {
		t.Fatalf("no start line in the log: %q %v", started, err)
	}
	list, err := c.ListProcesses(ctx, sb.ID, "web")
	if err != nil || len(list.Processes) != 1 || list.Processes[0].State != "running" {
		t.Fatalf("list: %+v %v", list, err)
	}
	for _, port := range []int{8000, 8001} {
		if err := c.WaitPort(ctx, sb.ID, port, time.Minute); err != nil {
			t.Fatalf("wait for port %d: %v", port, err)
		}
	}

	// The path form, with the API key.
	pathGet := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, c.PortURL(sb.ID, 8000, path), nil)
		req.Header.Set("Authorization", "Bearer "+key)
		return do(t, http.DefaultClient, req)
	}
	if code, body := pathGet("/"); code != 200 || !strings.Contains(body, "hello.txt") {
		t.Fatalf("path form listing: %d %q", code, body)
	}

	// The host form: every request goes to bothy, whatever the name.
	p, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: 8000})
	if err != nil {
		t.Fatal(err)
	}
	_, lport, _ := net.SplitHostPort(listen)
	host := fmt.Sprintf("8000-%s.%s:%s", sb.ID, domain, lport)
	if p.URL != "http://"+host+"/" || !strings.HasSuffix(p.PathURL, "/ports/8000/") {
		t.Fatalf("exposed: %+v", p)
	}
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", listen)
	}
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Transport: &http.Transport{DialContext: dial}}
	hostGet := func(client *http.Client, path string, hdr ...string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	anon := &http.Client{Transport: &http.Transport{DialContext: dial}}
	if code, body, _ := hostGet(anon, "/"); code != 401 || !strings.Contains(body, `"unauthenticated"`) {
		t.Fatalf("host form without the token: %d %q", code, body)
	}
	if code, _, _ := hostGet(anon, "/?bothy_token=pt_wrong"); code != 401 {
		t.Fatalf("host form with a wrong token: %d", code)
	}
	if code, _, _ := hostGet(anon, "/", "Authorization", "Bearer "+key); code != 401 {
		t.Fatalf("host form with the API key instead of the token: %d", code)
	}
	// A browser's navigation with the token is sent on without it, with a
	// cookie of that host that then stands for the token.
	code, body, h := hostGet(browser, "/?bothy_token="+p.Token, "Sec-Fetch-Mode", "navigate")
	if code != 200 || !strings.Contains(body, "hello.txt") {
		t.Fatalf("host form with the token: %d %q", code, body)
	}
	if code, body, _ := hostGet(browser, "/hello.txt"); code != 200 || body != "hello\n" {
		t.Fatalf("host form with the cookie: %d %q %v", code, body, h)
	}
	cookies := jar.Cookies(mustURL(t, "http://"+host+"/"))
	if len(cookies) != 1 || cookies[0].Name != "bothy_port_token" {
		t.Fatalf("cookies: %v", cookies)
	}
	if other := jar.Cookies(mustURL(t, fmt.Sprintf("http://8001-%s.%s/", sb.ID, domain))); len(other) != 0 {
		t.Fatalf("the cookie reaches another port's host: %v", other)
	}
	// A client without cookies sends the token in a header; 50 MiB arrive
	// byte for byte.
	req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/big", nil)
	req.Header.Set("X-Bothy-Port-Token", p.Token)
	resp, err := anon.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hash := sha256.New()
	n, err := io.Copy(hash, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n != 50<<20 || hex.EncodeToString(hash.Sum(nil)) != bigSum {
		t.Fatalf("50 MiB through the host form: %d, %d bytes, %v", resp.StatusCode, n, err)
	}
	// Names under the domain that are not an exposed port are not found.
	for _, name := range []string{"8002-" + sb.ID, "8000-sb-00000000000000ff", "www"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+name+"."+domain+":"+lport+"/", nil)
		if code, body := do(t, anon, req); code != 404 {
			t.Fatalf("host %s: %d %q", name, code, body)
		}
	}

	// The WebSocket echo server answers through both forms (its port public
	// for the host form: no token needed).
	if _, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: 8001, Public: true}); err != nil {
		t.Fatal(err)
	}
	wsDialer := websocket.Dialer{NetDialContext: dial, HandshakeTimeout: time.Minute}
	echo := func(url string, hdr http.Header) {
		t.Helper()
		ws, resp, err := wsDialer.Dial(url, hdr)
		if err != nil {
			t.Fatalf("WebSocket to %s: %v %+v", url, err, resp)
		}
		defer ws.Close()
		_ = ws.SetReadDeadline(time.Now().Add(time.Minute))
		for _, msg := range []string{"ping", strings.Repeat("x", 70000)} {
			if err := ws.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			if _, got, err := ws.ReadMessage(); err != nil || string(got) != msg {
				t.Fatalf("echo through %s: %d bytes %v", url, len(got), err)
			}
		}
	}
	echo(fmt.Sprintf("ws://8001-%s.%s:%s/", sb.ID, domain, lport), nil)
	echo(strings.Replace(c.PortURL(sb.ID, 8001, "/"), "http://", "ws://", 1), http.Header{"Authorization": {"Bearer " + key}})

	// A request to a paused sandbox resumes it.
	if _, err := c.PauseSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if code, body := pathGet("/hello.txt"); code != 200 || body != "hello\n" {
		t.Fatalf("paused sandbox's port: %d %q", code, body)
	}
	if got, err := c.GetSandbox(ctx, sb.ID); err != nil || got.State != "running" {
		t.Fatalf("after the request: %+v %v", got, err)
	}

	// SIGKILL of bothy: the server is still listed and serving, through
	// both forms, and its log goes on from where a reader stopped.
	var before strings.Builder
	var offset int64
	if err := c.ProcessLogs(ctx, sb.ID, web.PID, 0, false, func(r api.LogRecord) error {
		before.WriteString(r.Data)
		offset = r.Offset + int64(len(r.Data))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	d.kill()
	d = startDaemon(t, listen, data, env...)
	c = api.NewClient(d.url, key)
	list, err = c.ListProcesses(ctx, sb.ID, "web")
	if err != nil || len(list.Processes) != 1 || list.Processes[0].PID != web.PID || list.Processes[0].State != "running" {
		t.Fatalf("list after the restart: %+v %v", list, err)
	}
	if code, body := pathGet("/hello.txt"); code != 200 || body != "hello\n" {
		t.Fatalf("path form after the restart: %d %q", code, body)
	}
	if code, body, _ := hostGet(browser, "/hello.txt"); code != 200 || body != "hello\n" {
		t.Fatalf("host form after the restart: %d %q", code, body)
	}
	var after strings.Builder
	if err := c.ProcessLogs(ctx, sb.ID, web.PID, offset, false, func(r api.LogRecord) error {
		if r.Type == "output" && r.Offset != offset+int64(after.Len()) {
			return fmt.Errorf("a record at %d, want %d", r.Offset, offset+int64(after.Len()))
		}
		after.WriteString(r.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var whole strings.Builder
	if err := c.ProcessLogs(ctx, sb.ID, web.PID, 0, false, func(r api.LogRecord) error {
		whole.WriteString(r.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if before.String()+after.String() != whole.String() || !strings.Contains(after.String(), "GET /hello.txt") {
		t.Fatalf("the log across the restart:\nbefore %q\nafter %q\nwhole %q", before.String(), after.String(), whole.String())
	}

	// A stopped sandbox is started by a request; its server is gone, so the
	// answer, after a bounded wait for the port, says nothing listens.
	if _, err := c.StopSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	code, body = pathGet("/")
	var env502 api.ErrorEnvelope
	if code != http.StatusBadGateway || json.Unmarshal([]byte(body), &env502) != nil || env502.Error.Code != api.CodeNotListening {
		t.Fatalf("stopped sandbox's port: %d %q", code, body)
	}
	if got, err := c.GetSandbox(ctx, sb.ID); err != nil || got.State != "running" {
		t.Fatalf("after the request to the stopped sandbox: %+v %v", got, err)
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
}

// do sends req with client and answers the status and body.
func do(t *testing.T, client *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
