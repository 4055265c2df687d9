package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/openapi"
)

// uiRoutes are the web UI's pages and files: not API, not in the document.
var uiRoutes = []string{"/", "/docs", "/static/*", "/vendor/*"}

// TestOpenAPICoversRoutes holds the document to the router both ways: every
// registered route is in it, and it names no route the router lacks.
func TestOpenAPICoversRoutes(t *testing.T) {
	s := New(Config{}, Deps{Log: slog.New(slog.DiscardHandler)})
	registered := map[openapi.Route]bool{}
	for _, r := range s.e.Router().Routes() {
		if slices.Contains(uiRoutes, r.Path) || r.Method == echo.RouteNotFound {
			continue
		}
		m := r.Method
		if m == echo.RouteAny {
			m = "ANY"
		}
		registered[openapi.Route{Method: m, Path: r.Path}] = true
	}
	documented := map[openapi.Route]bool{}
	for _, r := range openapi.Routes() {
		documented[r] = true
		if !registered[r] {
			t.Errorf("the document names %s %s, which the router does not have", r.Method, r.Path)
		}
	}
	for r := range registered {
		if !documented[r] {
			t.Errorf("route %s %s is missing from the OpenAPI document (openapi/operations.go)", r.Method, r.Path)
		}
	}
}

// validator checks every request a server test makes, and every answer, against
// the OpenAPI document. A JSON answer must match its schema; a request the
// server accepted (2xx) must match the document too.
type validator struct {
	router routers.Router
	mu     sync.Mutex
	errs   []string
}

var loadDoc = sync.OnceValues(func() (routers.Router, error) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document())
	if err != nil {
		return nil, err
	}
	// Servers "/" would make the router match on a host.
	doc.Servers = nil
	openapi3filter.RegisterBodyDecoder("application/x-tar", openapi3filter.FileBodyDecoder)
	return gorillamux.NewRouter(doc)
})

// validated wraps h so the test fails on traffic the document does not
// describe. The failures are reported when the test ends.
func validated(t *testing.T, h http.Handler) http.Handler {
	router, err := loadDoc()
	if err != nil {
		t.Fatal(err)
	}
	v := &validator{router: router}
	t.Cleanup(func() {
		v.mu.Lock()
		defer v.mu.Unlock()
		for _, e := range v.errs {
			t.Error("OpenAPI: " + e)
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { v.serve(h, w, r) })
}

// unvalidated paths: free-form bodies in both directions (a sandbox's server,
// an app) or a name with slashes, which OpenAPI's path templates cannot match.
func unvalidated(path string) bool {
	return strings.Contains(path, "/ports/") && strings.Count(path, "/") > 5 && !strings.HasSuffix(path, "/wait") ||
		strings.Contains(path, "/invoke") || strings.HasPrefix(path, "/v1/images/") ||
		!strings.HasPrefix(path, "/v1/") && !slices.Contains([]string{"/healthz", "/readyz", "/metrics", "/openapi.json"}, path)
}

func (v *validator) fail(r *http.Request, format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, r.Method+" "+r.URL.String()+": "+fmt.Sprintf(format, args...))
}

func (v *validator) serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	if unvalidated(r.URL.Path) || r.Header.Get("Upgrade") != "" || strings.Contains(r.Host, previewDomain) {
		h.ServeHTTP(w, r)
		return
	}
	var body []byte
	jsonBody := strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") && r.ContentLength >= 0 && r.ContentLength < 1<<20
	if jsonBody {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec := &recorder{ResponseWriter: w}
	h.ServeHTTP(rec, r)

	route, params, err := v.router.FindRoute(r)
	if err != nil {
		if rec.status != http.StatusNotFound && rec.status != http.StatusMethodNotAllowed {
			v.fail(r, "answered %d but the document has no such route: %v", rec.status, err)
		}
		return
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true,
		ExcludeRequestBody: !jsonBody, ExcludeResponseBody: !rec.json()}
	in := &openapi3filter.RequestValidationInput{Request: r.Clone(context.Background()), PathParams: params, Route: route, Options: opts}
	in.Request.Body = http.NoBody // the handler read it
	if jsonBody {
		in.Request.Body = io.NopCloser(bytes.NewReader(body))
	}
	if rec.status < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			v.fail(r, "the server accepted (%d) a request the document refuses: %v", rec.status, err)
		}
	}
	if rec.json() && rec.overflow {
		return
	}
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: rec.status, Header: rec.Header(), Options: opts}
	out.SetBodyBytes(rec.body.Bytes())
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		v.fail(r, "answer %d does not match the document: %v", rec.status, err)
	}
}

// recorder passes an answer through and keeps a JSON answer's first MiB.
type recorder struct {
	http.ResponseWriter
	status   int
	body     bytes.Buffer
	overflow bool
}

func (r *recorder) json() bool {
	return strings.HasPrefix(r.Header().Get("Content-Type"), "application/json")
}

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.json() && !r.overflow {
		if r.body.Len()+len(b) > 1<<20 {
			r.overflow = true
		} else {
			r.body.Write(b)
		}
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if h, ok := r.ResponseWriter.(http.Hijacker); ok {
		return h.Hijack()
	}
	return nil, nil, errors.New("not a hijacker")
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
