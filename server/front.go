package server

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v5"
)

// front is the one middleware every request passes before it is routed: it
// gives the request an ID, recovers a handler's panic as a 500, bounds the
// request's head (limitHead) before anything records it, serves preview
// hosts and header-routed front doors itself, and then counts and logs the
// request under labels from the route table only. One layer, not a chain
// of them: a request that streams for as long as its client reads keeps
// its goroutine's stack small.
func (s *Server) front(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) (err error) {
		t0 := time.Now()
		r := c.Request()
		rid := r.Header.Get(echo.HeaderXRequestID)
		if !validRequestID(rid) {
			rid = newRequestID()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		c.Set(ctxRequestID, rid)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panicked", "panic", fmt.Sprint(p), "request_id", rid, "stack", string(debug.Stack()))
				err = fmt.Errorf("panic: %v", p)
			}
			s.finish(c, t0, err)
		}()
		if err := s.limitHead(c); err != nil {
			return err
		}
		if s.cfg.PreviewDomain != "" {
			if _, _, under := previewHost(r.Host, s.cfg.PreviewDomain); under {
				c.SetPath("preview")
				return s.previewServe(c)
			}
		}
		for _, m := range s.headerMounts {
			if r.Header.Get(m.Header) != "" && len(r.URL.Path) >= len(m.Path) && r.URL.Path[:len(m.Path)] == m.Path {
				c.SetPath("header:" + m.Header + " " + m.Path)
				return m.serve(c)
			}
		}
		return next(c)
	}
}

// finish counts and logs a request that has been answered (or failed
// with err, which the error handler answers next).
func (s *Server) finish(c *echo.Context, t0 time.Time, err error) {
	status, code := http.StatusOK, ""
	if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Status != 0 {
		status = r.Status
	}
	if err != nil {
		status, code, _ = classify(err)
	}
	d := time.Since(t0)
	route := s.metrics.observe(c, status, d)
	level := slog.LevelDebug
	switch {
	case route == "/readyz" || route == "/healthz":
		// Polled until ready: a 503 there is an answer, not a failure.
	case status >= 500 && !expected(status, code):
		level = slog.LevelError
	case status >= 400:
		level = slog.LevelInfo
	}
	rid, _ := c.Get(ctxRequestID).(string)
	s.log.Log(c.Request().Context(), level, "request", "method", c.Request().Method, "route", route,
		"status", status, "latency_ms", float64(d.Microseconds())/1000, "request_id", rid)
}

// validRequestID says a client's X-Request-Id may be used as the request's.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
