package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// stalledReaders is how many clients stop reading on each streaming route.
const stalledReaders = 128

// perStalledReader is what one may add to bothy's memory.
const perStalledReader = 64 << 10

// dialStalled connects to addr with a small receive buffer, for a client
// that sends its request and then reads nothing (after, for a WebSocket,
// the head of the answer): bothy's writes soon wait on it.
func dialStalled(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// queued is how many bytes wait unread in c's receive buffer.
func queued(c net.Conn) int {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	return n
}

// heldBytes is what bothy's Go runtime holds after a collection: its
// heap in use and its goroutines' stacks (sockets' kernel buffers are not
// bothy's). metrics is bothy's --metrics-listen address.
func heldBytes(t *testing.T, metrics string) int64 {
	t.Helper()
	resp, err := http.Get("http://" + metrics + "/debug/pprof/heap?debug=1&gc=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var total int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		for _, name := range []string{"# HeapInuse = ", "# Stack = "} {
			if v, ok := strings.CutPrefix(line, name); ok {
				v, _, _ = strings.Cut(v, " ")
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

// settled polls held until three readings in a row are within 1% of each
// other (or a minute passes) and returns the last.
func settled(t *testing.T, held func() int64) int64 {
	t.Helper()
	last, same := held(), 0
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline) && same < 3; {
		time.Sleep(300 * time.Millisecond)
		now := held()
		if d := now - last; d < 0 && -d <= last/100 || d >= 0 && d <= last/100 {
			same++
		} else {
			same = 0
		}
		last = now
	}
	return last
}

// TestStalledReadersHoldLittle opens 128 clients on each streaming route
// (and WebSocket) that send their request and then stop reading, while
// the sandbox keeps producing: each may add at most 64 KiB to what
// bothy holds, since every stream is flow-controlled from the agent to
// the client and every buffer on the way is small. Each route runs two
// rounds on a fresh bothy, and the second is held to the bound: the
// first also pays what a fresh process grows once (the runtime's caches,
// pools), which the log shows beside it.
func TestStalledReadersHoldLittle(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-stalled-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	const preview = "preview.test"
	// Each route is measured on a bothy of its own (the sandbox, its
	// processes and its terminal outlive it), so that nothing one route
	// left in the Go runtime's caches is counted for the next.
	var metrics string
	start := func() *daemon {
		metrics = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		return startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key,
			"BOTHY_PREVIEW_DOMAIN="+preview, "BOTHY_METRICS_LISTEN="+metrics)
	}
	d := start()
	ctx := context.Background()
	c := api.NewClient(d.url, key)
	// Room for E2B's 128 processes and their logs.
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{MemoryMB: 2048}, "")
	if err != nil {
		t.Fatal(err)
	}
	mustExec := func(shell string) {
		t.Helper()
		if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: shell}); err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %+v %v", shell, res, err)
		}
	}
	mustExec(`head -c 67108864 /dev/zero > /tmp/big && mkdir -p /tmp/bigdir /tmp/w && ln /tmp/big /tmp/bigdir/big`)
	yes, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"yes", "a line of output from a busy process"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: `i=0; while :; do i=$((i+1)); echo $i > /tmp/w/f$((i % 16)); done`}); err != nil {
		t.Fatal(err)
	}
	server := `
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        chunk = b"0" * 65536
        try:
            while True:
                self.wfile.write(chunk)
        except Exception:
            pass
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    request_queue_size = 512
S(("127.0.0.1", 8000), H).serve_forever()
`
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"python3", "-c", server}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: 8000, Public: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPort(ctx, sb.ID, 8000, time.Minute); err != nil {
		t.Fatal(err)
	}
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "export"})
	if err != nil {
		t.Fatal(err)
	}
	// E2B's data plane: the sandbox's access token, from its control plane.
	var e2b struct {
		SandboxID       string `json:"sandboxID"`
		EnvdAccessToken string `json:"envdAccessToken"`
	}
	{
		req, _ := http.NewRequest("POST", d.url+"/sandboxes/"+sb.ID+"/connect", strings.NewReader(`{"timeout":3600}`))
		req.Header.Set("X-API-KEY", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(body, &e2b); err != nil || e2b.EnvdAccessToken == "" {
			t.Fatalf("E2B connect: %d %s", resp.StatusCode, body)
		}
	}
	// A terminal session that prints without end, for its viewers.
	pty, err := c.DialPty(ctx, sb.ID, api.PtyOptions{Cmd: []string{"yes"}, IdleTimeoutS: 3600})
	if err != nil {
		t.Fatal(err)
	}
	session := pty.Session.ID
	pty.Close() // detaches; the session goes on

	auth := "Authorization: Bearer " + key + "\r\n"
	get := func(path string, extra string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: x\r\n" + auth + extra + "\r\n"
	}
	post := func(path, body string, extra string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: x\r\n" + auth + extra +
			"Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	wsHead := func(path string) string {
		k := make([]byte, 16)
		rand.Read(k)
		return get(path, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "+base64.StdEncoding.EncodeToString(k)+"\r\n")
	}
	// E2B's processes outlive their streams: they are killed after each
	// round, so that one round's busy processes do not starve the next.
	const e2bTag = "stalled-e2b"
	startMsg, _ := json.Marshal(map[string]any{"tag": e2bTag, "process": map[string]any{"cmd": "yes"}})
	envelope := make([]byte, 5, 5+len(startMsg))
	binary.BigEndian.PutUint32(envelope[1:], uint32(len(startMsg)))
	envelope = append(envelope, startMsg...)
	box := "/v1/sandboxes/" + sb.ID
	routes := []struct {
		name    string
		request string
		upgrade bool // read the answer's head, then stop
	}{
		{"file download", get(box+"/files?path=/tmp/big", ""), false},
		{"archive download", get(box+"/archive?path=/tmp/bigdir", ""), false},
		{"followed process log", get(box+"/processes/"+strconv.Itoa(yes.PID)+"/logs?follow=true", ""), false},
		{"streamed exec", post(box+"/exec", `{"shell":"head -c 8388608 /dev/zero"}`, "Accept: application/x-ndjson\r\n"), false},
		{"file watch", get(box+"/files/watch?path=/tmp/w", ""), false},
		{"port, path form", get(box+"/ports/8000/", ""), false},
		{"port, preview host, anonymous", "GET / HTTP/1.1\r\nHost: 8000-" + sb.ID + "." + preview + "\r\n\r\n", false},
		{"snapshot export", get("/v1/snapshots/"+snap.ID+"/export", ""), false},
		{"terminal viewer", wsHead(box + "/pty?session=" + session + "&replay=false"), true},
		{"exec socket", wsHead(box + "/exec?cmd=head&cmd=-c&cmd=8388608&cmd=/dev/zero"), true},
		{"E2B process stream", "POST /process.Process/Start HTTP/1.1\r\nHost: x\r\nE2b-Sandbox-Id: " + sb.ID +
			"\r\nX-Access-Token: " + e2b.EnvdAccessToken + "\r\nContent-Type: application/connect+json\r\nConnect-Protocol-Version: 1\r\nContent-Length: " +
			strconv.Itoa(len(envelope)) + "\r\n\r\n" + string(envelope), false},
	}
	held := func() int64 { return heldBytes(t, metrics) }
	for _, rt := range routes {
		d.stop(t)
		d = start()
		host := strings.TrimPrefix(d.url, "http://")
		// A first call: the agent's channel, the key's cache.
		c = api.NewClient(d.url, key)
		if _, err := c.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil {
			logs := d.log()
			t.Fatalf("before %s: %v\nthe end of bothy's log:\n%s", rt.name, err, logs[max(0, len(logs)-6000):])
		}
		// What the routes stream from must still be there: a failure says
		// why it is not, rather than as a route's answer.
		sessions, err := c.ListPtySessions(ctx, sb.ID)
		if alive := slices.ContainsFunc(sessions.Sessions, func(p api.PtySession) bool { return p.ID == session && !p.Exited }); err != nil || !alive {
			now, _ := c.GetSandbox(ctx, sb.ID)
			logs := d.log()
			t.Fatalf("before %s: the terminal session is gone (%+v %v); the sandbox: %+v\nthe end of bothy's log:\n%s",
				rt.name, sessions, err, now, logs[max(0, len(logs)-6000):])
		}
		// Two rounds: the first also grows what a fresh process makes once
		// (sync.Pools, the runtime's caches of spans and stacks, the port's
		// kept-alive connections); the second is what each reader costs.
		for round := 1; round <= 2; round++ {
			before := settled(t, held)
			conns := make([]net.Conn, 0, stalledReaders)
			var mu sync.Mutex
			var wg sync.WaitGroup
			for range stalledReaders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cn := dialStalled(t, host)
					if _, err := io.WriteString(cn, rt.request); err != nil {
						t.Errorf("%s: %v", rt.name, err)
					}
					if rt.upgrade {
						// The head, byte by byte: nothing of what follows.
						var head []byte
						b := make([]byte, 1)
						for !strings.HasSuffix(string(head), "\r\n\r\n") {
							if _, err := cn.Read(b); err != nil {
								t.Errorf("%s: the answer's head: %v (%q)", rt.name, err, head)
								break
							}
							head = append(head, b[0])
						}
						if !strings.HasPrefix(string(head), "HTTP/1.1 101") {
							t.Errorf("%s: %q", rt.name, head)
						}
					}
					mu.Lock()
					conns = append(conns, cn)
					mu.Unlock()
				}()
			}
			wg.Wait()
			// Every client has had some of its answer: bothy streams to all.
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
				waiting := 0
				for _, cn := range conns {
					if queued(cn) == 0 {
						waiting++
					}
				}
				if waiting == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: %d clients got nothing in a minute", rt.name, waiting)
				}
			}
			during := settled(t, held)
			per := (during - before) / stalledReaders
			t.Logf("%s, round %d: %d stalled readers add %d KiB each (held %d -> %d MiB)", rt.name, round, stalledReaders, per>>10, before>>20, during>>20)
			if round == 2 && per > perStalledReader {
				t.Errorf("%s: each stalled reader adds %d KiB, more than %d KiB", rt.name, per>>10, perStalledReader>>10)
			}
			// A sample of what came: an answer, not an error.
			peek := make([]byte, 12)
			if n, _ := io.ReadFull(conns[0], peek); n < 12 || !strings.HasPrefix(string(peek), "HTTP/1.1 ") && !rt.upgrade {
				t.Errorf("%s: the answer begins %q", rt.name, peek[:n])
			}
			for _, cn := range conns {
				cn.Close()
			}
			started, err := c.ListProcesses(ctx, sb.ID, e2bTag)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range started.Processes {
				if p.State != "running" {
					continue
				}
				if _, err := c.KillProcess(ctx, sb.ID, p.PID); err != nil {
					logs := d.log()
					t.Fatalf("kill %d: %v\nthe end of bothy's log:\n%s", p.PID, err, logs[max(0, len(logs)-6000):])
				}
			}
		}
	}
	if _, err := c.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil {
		t.Fatalf("exec after the stalled readers: %v", err)
	}
}
