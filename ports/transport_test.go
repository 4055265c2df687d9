package ports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/internal/testenv"
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
		c := &http.Client{Transport: pl.transport(conn, port, nil)}
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
	first, again := pl.transport(conn, port, nil), pl.transport(conn, port, nil)
	if first != again || first == pl.transport(conn, port+1, nil) {
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

// TestTransportSpeaksHTTP: the transport's own HTTP/1.1 client side, against
// net/http's server through a real agent: bodies both ways (sized and
// chunked), HEAD, informational answers, a server that closes a kept
// connection, one that answers before reading the body, and a cancelled
// request.
func TestTransportSpeaksHTTP(t *testing.T) {
	var conns atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, _ *http.Request) {
		for i := range 3 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/early", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	mux.HandleFunc("/continue", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "after the hints")
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "closing")
	})
	block := make(chan struct{})
	// A server that stops sending mid-answer, whatever the client does.
	mux.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-block
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	defer close(block)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	tr := &transport{conn: testenv.AgentConn(t), port: port}
	c := &http.Client{Transport: tr}
	get := func(method, path string, body io.Reader) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://localhost"+path, body)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	big := strings.Repeat("0123456789", 300000) // 3 MB, more than a frame
	if code, body := get("POST", "/echo", strings.NewReader(big)); code != 200 || body != big {
		t.Fatalf("sized body: %d, %d bytes", code, len(body))
	}
	if code, body := get("POST", "/echo", io.MultiReader(strings.NewReader("chun"), strings.NewReader("ked"))); code != 200 || body != "chunked" {
		t.Fatalf("chunked body: %d %q", code, body)
	}
	if code, body := get("GET", "/chunked", nil); code != 200 || body != "part 0\npart 1\npart 2\n" {
		t.Fatalf("chunked answer: %d %q", code, body)
	}
	if code, body := get("HEAD", "/chunked", nil); code != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", code, body)
	}
	if code, body := get("GET", "/continue", nil); code != 200 || body != "after the hints" {
		t.Fatalf("after 103: %d %q", code, body)
	}
	before := conns.Load()
	for range 3 {
		if code, _ := get("GET", "/echo", nil); code != 200 {
			t.Fatal(code)
		}
	}
	if n := conns.Load() - before; n != 0 {
		t.Fatalf("kept-alive requests opened %d connections", n)
	}
	// A server that closes its side: the next request has a new connection.
	if code, body := get("GET", "/close", nil); code != 200 || body != "closing" {
		t.Fatalf("close: %d %q", code, body)
	}
	if code, _ := get("GET", "/echo", nil); code != 200 {
		t.Fatalf("after a close: %d", code)
	}
	// A kept connection the server drops while idle is replaced.
	srv.CloseClientConnections()
	if code, _ := get("GET", "/echo", nil); code != 200 {
		t.Fatalf("after the server dropped its connections: %d", code)
	}
	// An answer before the body is read: the connection is not kept.
	if code, _ := get("POST", "/early", strings.NewReader(big)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("early answer: %d", code)
	}
	if code, body := get("POST", "/echo", strings.NewReader("next")); code != 200 || body != "next" {
		t.Fatalf("after an early answer: %d %q", code, body)
	}
	// A cancelled request ends its connection; the transport goes on.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://localhost/slow", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a cancelled answer read to its end")
	}
	resp.Body.Close()
	if code, _ := get("GET", "/echo", nil); code != 200 {
		t.Fatalf("after a cancel: %d", code)
	}
	tr.CloseIdleConnections()
}

// recorder keeps what is written to it, and the size of the largest write.
type recorder struct {
	b       strings.Builder
	largest int
}

func (r *recorder) Write(p []byte) (int, error) {
	r.largest = max(r.largest, len(p))
	return r.b.Write(p)
}

// TestBulkAnswersGoDirect: a sized answer whose stream has become a bulk
// one is copied to the client by the body itself, in writes larger than
// the proxy's small buffer, whole, and its connection is kept for the next
// request; what the proxy reads of it then is its end.
func TestBulkAnswersGoDirect(t *testing.T) {
	big := strings.Repeat("0123456789", 300000) // 3 MB
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		_, _ = io.WriteString(w, big)
	}))
	defer srv.Close()
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	tr := &transport{conn: testenv.AgentConn(t), port: port}
	defer tr.CloseIdleConnections()
	for round := range 2 {
		req, _ := http.NewRequest("GET", "http://localhost/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body := resp.Body.(*answerBody)
		var client recorder
		body.direct = &client
		// The proxy's own copy: a small buffer, until the body says EOF.
		var proxied strings.Builder
		if _, err := io.CopyBuffer(struct{ io.Writer }{&proxied}, struct{ io.Reader }{body}, make([]byte, copyBuffer)); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := proxied.String() + client.b.String(); got != big {
			t.Fatalf("round %d: %d bytes arrived, want %d", round, len(got), len(big))
		}
		if client.largest <= copyBuffer {
			t.Fatalf("round %d: the body never went direct (largest write %d)", round, client.largest)
		}
		tr.mu.Lock()
		idle := len(tr.idle)
		tr.mu.Unlock()
		if idle != 1 {
			t.Fatalf("round %d: %d connections kept, want 1", round, idle)
		}
	}
}

// A new connection is the runtime's where it can make one; the agent's
// when the runtime cannot (from then on), and when its try fails for
// another reason (that time only); a port nothing listens on is said so
// without asking the agent.
func TestTransportFallsBackToTheAgent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") }))
	defer srv.Close()
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(p)
	conn := testenv.AgentConn(t)
	var tries atomic.Int32
	get := func(dial func(context.Context) (net.Conn, error)) (*transport, error) {
		t.Helper()
		tr := &transport{conn: conn, port: port, dial: func(ctx context.Context) (net.Conn, error) {
			tries.Add(1)
			return dial(ctx)
		}}
		c := &http.Client{Transport: tr}
		resp, err := c.Get("http://localhost/")
		if err != nil {
			return tr, err
		}
		defer resp.Body.Close()
		if b, _ := io.ReadAll(resp.Body); string(b) != "hi" {
			t.Fatalf("answer %q", b)
		}
		tr.CloseIdleConnections()
		return tr, nil
	}
	var d net.Dialer
	direct := func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}
	if tr, err := get(direct); err != nil || tr.viaAgent.Load() || tries.Load() != 1 {
		t.Fatalf("the runtime's connection: %v, through the agent %v, %d tries", err, tr.viaAgent.Load(), tries.Load())
	}
	tries.Store(0)
	unsupported := func(context.Context) (net.Conn, error) { return nil, fmt.Errorf("no view: %w", errors.ErrUnsupported) }
	tr, err := get(unsupported)
	if err != nil || !tr.viaAgent.Load() {
		t.Fatalf("a runtime that cannot: %v, through the agent %v", err, tr.viaAgent.Load())
	}
	if _, err := (&http.Client{Transport: tr}).Get("http://localhost/"); err != nil || tries.Load() != 1 {
		t.Fatalf("again: %v, %d tries of the runtime, want 1", err, tries.Load())
	}
	transient := func(context.Context) (net.Conn, error) { return nil, errors.New("the engine is slow") }
	if tr, err := get(transient); err != nil || tr.viaAgent.Load() {
		t.Fatalf("a failed try: %v, through the agent from then on %v", err, tr.viaAgent.Load())
	}
	refused := func(context.Context) (net.Conn, error) { return nil, agent.ErrNotListening }
	if _, err := get(refused); !errors.Is(err, agent.ErrNotListening) {
		t.Fatalf("nothing listens: %v", err)
	}
}
