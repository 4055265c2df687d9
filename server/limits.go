package server

import (
	"io"
	"net/http"
	"strconv"

	"github.com/labstack/echo/v5"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/bounds"
	"github.com/sandboxd/sandboxd/supervisor"
)

// Limits of a request's head, checked before routing and before anything
// records the request (net/http bounds the whole head: maxHeaderBytes).
const (
	// maxHeaderBytes bounds a request's line and headers together.
	maxHeaderBytes = 64 << 10
	// maxMethod bounds a method's name: every real one is shorter.
	maxMethod = 24
	// maxURI bounds the path and query.
	maxURI = 16 << 10
	// maxHeaders bounds the number of header lines.
	maxHeaders = 128
	// wholeFactor is what a body read whole costs in memory, per byte of
	// it: the bytes, and what decoding them makes.
	wholeFactor = 4
)

// knownMethods are the methods named in metrics; any other is "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// limitHead refuses a request whose head is out of bounds, before it is
// routed, logged or counted under anything it chose.
func (s *Server) limitHead(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		switch {
		case len(r.Method) > maxMethod:
			return newError(http.StatusNotImplemented, api.CodeMethodNotAllowed, "method not implemented")
		case len(r.RequestURI) > maxURI:
			return newError(http.StatusRequestURITooLong, api.CodeInvalidArgument, "the request's path and query are longer than "+strconv.Itoa(maxURI)+" bytes")
		case len(r.Header) > maxHeaders:
			return newError(http.StatusRequestHeaderFieldsTooLarge, api.CodeInvalidArgument, "more than "+strconv.Itoa(maxHeaders)+" header fields")
		}
		return next(c)
	}
}

// enter opens the request's scope of class: the body is refused past the
// class's limit (before any of it is read when its size is declared), every
// read of it and every write of the answer gets a deadline, and the scope
// rides in the request's context for the front door and the domain.
func (s *Server) enter(class bounds.Class) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			r := c.Request()
			if r.ContentLength > class.Body {
				return echo.ErrStatusRequestEntityTooLarge
			}
			sc := s.bounds.Begin(class)
			defer sc.End()
			w := bounds.NewWriter(c.Response(), sc.WriteIdle())
			w.Arm()
			// The server's own flush of what the handler left buffered.
			defer w.Arm()
			c.SetResponse(w)
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = &boundedBody{r: bounds.NewBody(w, r.Body, sc.ReadIdle()), left: class.Body}
			}
			c.SetRequest(r.WithContext(bounds.With(r.Context(), sc)))
			return next(c)
		}
	}
}

// hold takes what the request holds once its key is known: a place among
// the requests to its sandbox, and for a body read whole, its share of the
// body budget.
func (s *Server) hold(class bounds.Class) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			r := c.Request()
			sc := bounds.From(r.Context())
			if sandboxRoute(c.Path()) {
				if err := sc.Sandbox(c.Param("id")); err != nil {
					return err
				}
			}
			if class.Whole && r.Body != nil && r.Body != http.NoBody {
				n := r.ContentLength
				if n < 0 {
					n = class.Body
				}
				if _, err := sc.ReserveBody(r.Context(), wholeFactor*n); err != nil {
					return err
				}
			}
			return next(c)
		}
	}
}

// keyInContext hands the authenticated key on in the request's context, to
// a mounted front door.
func (s *Server) keyInContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		r := c.Request()
		c.SetRequest(r.WithContext(supervisor.WithKey(r.Context(), caller(c))))
		return next(c)
	}
}

// boundedBody reads a body up to left bytes and refuses the rest with 413.
type boundedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body at the limit from one over it.
		var one [1]byte
		if n, err := b.r.Read(one[:]); n == 0 {
			return 0, err
		}
		return 0, echo.ErrStatusRequestEntityTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.r.Close() }
