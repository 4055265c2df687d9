package ports

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandboxd/sandboxd/internal/testenv"
)

// TestPoolKeepsConnectionsAlive: requests to a port through one agent
// connection reuse one connection to the server; when the agent connection
// ends, its transports are closed and forgotten.
func TestPoolKeepsConnectionsAlive(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") }))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	conn := testenv.AgentConn(t)

	var pl pool
	for range 5 {
		c := &http.Client{Transport: pl.transport(conn, port)}
		resp, err := c.Get("http://localhost/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hi" {
			t.Fatalf("answer %q", b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections to the server for 5 requests, want 1", n)
	}
	first, again := pl.transport(conn, port), pl.transport(conn, port)
	if first != again || first == pl.transport(conn, port+1) {
		t.Fatal("one transport per connection and port")
	}
	conn.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		pl.mu.Lock()
		n := len(pl.byConn)
		pl.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the transports of an ended connection are kept: %d", n)
		}
	}
}
