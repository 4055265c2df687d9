package server

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/supervisor"
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
func (s *Server) limitHead(c *echo.Context) error {
	r := c.Request()
	switch {
	case len(r.Method) > maxMethod:
		return newError(http.StatusNotImplemented, api.CodeMethodNotAllowed, "method not implemented")
	case len(r.RequestURI) > maxURI:
		return newError(http.StatusRequestURITooLong, api.CodeInvalidArgument, "the request's path and query are longer than "+strconv.Itoa(maxURI)+" bytes")
	case len(r.Header) > maxHeaders:
		return newError(http.StatusRequestHeaderFieldsTooLarge, api.CodeInvalidArgument, "more than "+strconv.Itoa(maxHeaders)+" header fields")
	}
	return nil
}

// Guard flags: what a route needs besides its class.
const (
	// withKey authenticates the bearer key (Authorization: Bearer KEY).
	withKey = 1 << iota
	// adminKey admits admin keys only.
	adminKey
	// keyInContext hands the key on in the request's context, to a
	// mounted front door.
	keyInContext
	// keyIfSent authenticates the bearer key when the request sends one;
	// without one the handler decides (a port's token, a public port).
	keyIfSent
)

// guard is the one middleware of a route: it opens the request's scope of
// class (the body is refused past the class's limit, before any of it is
// read when its size is declared; every read of it and every write of the
// answer gets a deadline; the scope rides in the request's context for the
// front door and the domain), authenticates the key when the route needs
// one (and counts the request against the key's cap), counts it against
// its sandbox's, and reserves a body read whole from the body budget.
func (s *Server) guard(class bounds.Class, flags int) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			// The checks are a call of their own: a stream's handler
			// waits for as long as the stream lasts, and its stack stays
			// as deep as the frames under it are big (issue 22).
			sc, w, err := s.admit(c, class, flags)
			if sc != nil {
				defer sc.End()
			}
			if w != nil {
				// The server's own flush of what the handler left buffered.
				defer w.Arm()
			}
			if err != nil {
				return err
			}
			return next(c)
		}
	}
}

// admit opens a request's scope in class and checks what flags ask for.
// The scope and the writer, once made, are the caller's to end and arm
// whatever the error.
//
//go:noinline
func (s *Server) admit(c *echo.Context, class bounds.Class, flags int) (*bounds.Scope, *bounds.Writer, error) {
	r := c.Request()
	hasBody := r.Body != nil && r.Body != http.NoBody
	if hasBody {
		// Until the handler reads the body (each read waits at
		// most ReadIdle; its end clears the deadline), and while
		// net/http discards what a handler left unread before it
		// answers, the client's silence is bounded too.
		_ = http.NewResponseController(c.Response()).SetReadDeadline(time.Now().Add(s.bounds.Config().ReadIdle))
	}
	if r.ContentLength > class.Body {
		// Refused unread, and not read afterwards either.
		bounds.CloseAfter(c.Response())
		return nil, nil, echo.ErrStatusRequestEntityTooLarge
	}
	sc := s.bounds.Begin(class)
	w := bounds.NewWriter(c.Response(), sc.WriteIdle())
	w.Arm()
	c.SetResponse(w)
	if hasBody {
		r.Body = &boundedBody{r: bounds.NewBody(w, r.Body, sc.ReadIdle()), w: w, left: class.Body}
	}
	ctx := bounds.With(r.Context(), sc)
	if flags&withKey != 0 || flags&keyIfSent != 0 && r.Header.Get("Authorization") != "" {
		key, err := s.keyOf(r)
		if err != nil {
			return sc, w, err
		}
		if flags&adminKey != 0 && !key.Admin {
			return sc, w, newError(http.StatusForbidden, api.CodeForbidden, "this needs an admin key")
		}
		if err := sc.Key(key.ID); err != nil {
			return sc, w, err
		}
		c.Set(ctxKey, key)
		if flags&keyInContext != 0 {
			ctx = supervisor.WithKey(ctx, key)
		}
	}
	c.SetRequest(r.WithContext(ctx))
	if sandboxRoute(c.Path()) {
		if err := sc.Sandbox(c.Param("id")); err != nil {
			return sc, w, err
		}
	}
	if class.Whole && hasBody {
		n := r.ContentLength
		if n < 0 {
			n = class.Body
		}
		if _, err := sc.ReserveBody(ctx, wholeFactor*n); err != nil {
			return sc, w, err
		}
	}
	return sc, w, nil
}

// boundedBody reads a body up to left bytes and refuses the rest with 413
// (and the connection is closed after the answer, the rest unread).
type boundedBody struct {
	r    io.ReadCloser
	w    http.ResponseWriter
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One more byte tells a body at the limit from one over it.
		var one [1]byte
		if n, err := b.r.Read(one[:]); n == 0 {
			return 0, err
		}
		bounds.CloseAfter(b.w)
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
