package server

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/bounds"
)

// seriesCount is the number of series the server's registry holds.
func seriesCount(t *testing.T, s *Server) int {
	t.Helper()
	fams, err := s.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		n += len(f.Metric)
	}
	return n
}

// TestJunkAddsNoSeries: 10000 requests with distinct junk methods, and junk
// paths and heads, are refused before anything records them under a name
// they chose: the number of metric series does not move.
func TestJunkAddsNoSeries(t *testing.T) {
	s := New(Config{}, Deps{Log: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	send := func(method, path string, hdr http.Header) int {
		t.Helper()
		req, err := http.NewRequest(method, hs.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Every label value a junk request can reach, once.
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "JUNK", strings.Repeat("X", 100)} {
		for _, p := range []string{"/healthz", "/v1/sandboxes", "/nope"} {
			send(m, p, nil)
		}
	}
	before := seriesCount(t, s)
	for i := range 10000 {
		method := fmt.Sprintf("M%dX", i)
		if st := send(method, "/v1/sandboxes", nil); st != http.StatusNotImplemented {
			t.Fatalf("%s /v1/sandboxes: %d", method, st)
		}
		if i%1000 == 0 {
			if st := send(strings.Repeat("Y", 100+i), "/healthz", nil); st != http.StatusNotImplemented {
				t.Fatalf("a %d-byte method: %d", 100+i, st)
			}
			if st := send("GET", "/nope/"+strings.Repeat("p", 20000+i), nil); st != http.StatusRequestURITooLong {
				t.Fatalf("a long path: %d", st)
			}
			many := http.Header{}
			for j := range maxHeaders + 1 {
				many.Set(fmt.Sprintf("X-H%d-%d", i, j), "v")
			}
			if st := send("GET", "/healthz", many); st != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("%d headers: %d", maxHeaders+1, st)
			}
		}
	}
	if after := seriesCount(t, s); after != before {
		t.Fatalf("metric series: %d before the junk, %d after", before, after)
	}
}

// TestHeadOverTheLimitIsRefusedUnread: a request head past maxHeaderBytes
// gets 431 from the listener itself, whatever its method.
func TestHeadOverTheLimitIsRefusedUnread(t *testing.T) {
	s := New(Config{}, Deps{Log: slog.New(slog.DiscardHandler)})
	hs := s.HTTPServer("127.0.0.1:0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go hs.Serve(ln)
	defer hs.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go func() {
		fmt.Fprintf(c, "%s / HTTP/1.1\r\nHost: x\r\n\r\n", strings.Repeat("M", 512<<10))
	}()
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(c, buf, 12)
	if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 431") {
		t.Fatalf("a 512 KiB method: %q", buf[:n])
	}
}

// unclassified lists the routes registered without a class.
func unclassified(s *Server) []string {
	var out []string
	for _, r := range s.e.Router().Routes() {
		if _, ok := s.class[r.Method+" "+r.Path]; !ok {
			out = append(out, r.Method+" "+r.Path)
		}
	}
	return out
}

// TestEveryRouteHasAClass: the route table, mounted front doors included,
// holds no route without a class, and a route registered around it is
// found.
func TestEveryRouteHasAClass(t *testing.T) {
	s := New(Config{}, Deps{Log: slog.New(slog.DiscardHandler), Mounts: []bounds.Mount{
		{Path: "/mcp", Kind: bounds.KindJSON, Auth: true, Handler: http.NotFoundHandler()},
		{Path: "/x/*", Kind: bounds.KindRPC, Handler: http.NotFoundHandler()},
		{Header: "X-Front-Door", Kind: bounds.KindStream, Handler: http.NotFoundHandler()},
	}})
	if bad := unclassified(s); len(bad) > 0 {
		t.Fatalf("routes without a class: %v", bad)
	}
	for _, k := range []string{"echo_route_any /mcp", "echo_route_any /x/*", "HEADER X-Front-Door "} {
		if _, ok := s.class[k]; !ok {
			t.Errorf("mount %q has no class", k)
		}
	}
	s.e.GET("/around", func(c *echo.Context) error { return nil })
	if bad := unclassified(s); len(bad) != 1 || bad[0] != "GET /around" {
		t.Fatalf("a route registered around the table: %v", bad)
	}
}
