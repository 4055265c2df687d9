package server

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/images"
)

// hostileServer answers every connection with a head that never ends (256
// MiB of one header, or 100,000 header fields), or never answers at all,
// or sets cookies it may not: a sandbox's server is not trusted.
const hostileServer = `
import socket, threading, sys
def serve(c):
    try:
        req = c.recv(65536).decode("latin-1")
        path = req.split(" ")[1] if " " in req else "/"
        if path == "/big":
            c.sendall(b"HTTP/1.1 200 OK\r\nX-Big: ")
            chunk = b"a" * 65536
            for _ in range(4096):  # 256 MiB
                c.sendall(chunk)
        elif path == "/many":
            c.sendall(b"HTTP/1.1 200 OK\r\n")
            for i in range(100000):
                c.sendall(b"X-H%d: v\r\n" % i)
            c.sendall(b"\r\n")
        elif path == "/cookies":
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                b"Set-Cookie: own=1; Path=/\r\n"
                b"Set-Cookie: wide=1; Domain=example.test; Path=/\r\n"
                b"Set-Cookie: bothy_port_token=forged; Path=/\r\n"
                b"Set-Cookie: __Host-bothy_port_token=forged; Secure; Path=/\r\n"
                b"\r\nok")
    except Exception:
        pass
    finally:
        c.close()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8000)); s.listen(64)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
`

// heapInUse is the process's heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestPortProxyTreatsTheServerAsHostile: a sandbox's server that sends a
// 256 MiB header, or 100,000 header fields, gets its client a 502 once the
// head passes its bounds, eight at once, with bothy's heap (this process
// is bothy here) as it was; cookies for another domain or with
// bothy's names are dropped. Not in parallel: the heap is the whole test
// process's, and other tests' files and outputs would be counted.
func TestPortProxyTreatsTheServerAsHostile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreateWith(t, c, api.CreateSandboxRequest{Image: images.Base})
	if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Cmd: []string{"python3", "-c", hostileServer}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExposePort(ctx, sb.ID, api.ExposePortRequest{Port: 8000}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPort(ctx, sb.ID, 8000, time.Minute); err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, http.Header, string) {
		req, _ := http.NewRequest(http.MethodGet, c.PortURL(sb.ID, 8000, path), nil)
		req.Header.Set("Authorization", "Bearer "+f.user)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, resp.Header, string(b)
	}
	before := heapInUse()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := "/big"
			if i%2 == 1 {
				path = "/many"
			}
			if code, _, body := get(path); code != http.StatusBadGateway || !strings.Contains(body, "header") {
				t.Errorf("%s: %d %s", path, code, body)
			}
		}()
	}
	wg.Wait()
	if after := heapInUse(); after > before+8<<20 {
		t.Errorf("eight hostile heads took the heap from %d to %d MiB", before>>20, after>>20)
	}
	code, h, body := get("/cookies")
	if code != 200 || body != "ok" {
		t.Fatalf("cookies: %d %q", code, body)
	}
	if got := h.Values("Set-Cookie"); len(got) != 1 || !strings.HasPrefix(got[0], "own=1") {
		t.Fatalf("cookies passed on: %q", got)
	}
}
