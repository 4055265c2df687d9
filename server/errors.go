package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/ports"
)

// statusClientClosed is the status of a request whose client went away
// before its answer (nginx's 499).
const statusClientClosed = 499

// expected says an answer, though an error, is an outcome the platform
// meant: a client that went away, a sandbox's port that nothing listens on.
func expected(status int, code string) bool {
	return status == statusClientClosed || code == api.CodeNotListening
}

const (
	ctxRequestID = "request_id"
	ctxKey       = "api_key"
)

// apiError is an error the server itself raises with a status and a code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func newError(status int, code, msg string) error {
	return &apiError{status: status, code: code, msg: msg}
}

func badRequest(msg string) error {
	return newError(http.StatusBadRequest, api.CodeInvalidArgument, msg)
}

// classify maps an error to its HTTP status, code and client-safe message. This
// is the one place errors become HTTP.
func classify(err error) (int, string, string) {
	var ae *apiError
	var sc echo.HTTPStatusCoder
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code, ae.msg
	case errors.Is(err, context.Canceled):
		// The client went away (or bothy is shutting down): nobody reads
		// the answer, and nothing failed.
		return statusClientClosed, api.CodeCanceled, "the request was canceled"
	case errors.Is(err, fsapi.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, api.CodeTooLarge, err.Error()
	case errors.Is(err, ports.ErrNotListening):
		return http.StatusBadGateway, api.CodeNotListening, err.Error()
	case errors.Is(err, ports.ErrHeadTooLarge):
		return http.StatusBadGateway, api.CodeUnavailable, err.Error()
	case errors.Is(err, fsapi.ErrNoSpace):
		return http.StatusInsufficientStorage, api.CodeNoSpace, err.Error()
	case cerrdefs.IsInvalidArgument(err):
		return http.StatusBadRequest, api.CodeInvalidArgument, err.Error()
	case cerrdefs.IsNotFound(err):
		return http.StatusNotFound, api.CodeNotFound, err.Error()
	case cerrdefs.IsConflict(err), cerrdefs.IsAlreadyExists(err), cerrdefs.IsFailedPrecondition(err):
		return http.StatusConflict, api.CodeConflict, err.Error()
	case cerrdefs.IsPermissionDenied(err):
		return http.StatusForbidden, api.CodeForbidden, err.Error()
	case cerrdefs.IsResourceExhausted(err):
		// A rate limit says when to come back; a quota does not.
		var ra interface{ RetryAfter() time.Duration }
		if !errors.As(err, &ra) {
			return http.StatusTooManyRequests, api.CodeQuotaExceeded, err.Error()
		}
		return http.StatusTooManyRequests, api.CodeRateLimited, err.Error()
	case cerrdefs.IsUnavailable(err):
		return http.StatusServiceUnavailable, api.CodeUnavailable, err.Error()
	case cerrdefs.IsNotImplemented(err):
		return http.StatusNotImplemented, api.CodeNotImplemented, err.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, api.CodeUnavailable, "the operation timed out"
	case errors.As(err, &sc):
		switch st := sc.StatusCode(); st {
		case http.StatusNotFound:
			return st, api.CodeNotFound, "no such route"
		case http.StatusMethodNotAllowed:
			return st, api.CodeMethodNotAllowed, "method not allowed on this route"
		case http.StatusRequestEntityTooLarge:
			return st, api.CodeTooLarge, "request body is too large"
		case http.StatusUnsupportedMediaType:
			return st, api.CodeUnsupportedMedia, "send application/json"
		case http.StatusUnauthorized:
			return st, api.CodeUnauthenticated, "unauthenticated"
		default:
			if st >= 400 && st < 500 {
				return st, api.CodeInvalidArgument, http.StatusText(st)
			}
		}
	}
	return http.StatusInternalServerError, api.CodeInternal, "internal error"
}

// handleError writes every error as the JSON envelope, and logs the ones that
// are the platform's fault.
func (s *Server) handleError(c *echo.Context, err error) {
	if r, _ := echo.UnwrapResponse(c.Response()); r != nil && r.Committed {
		return
	}
	status, code, msg := classify(err)
	rid, _ := c.Get(ctxRequestID).(string)
	if status >= 500 && !expected(status, code) {
		s.log.Error("request failed", "err", err, "request_id", rid, "path", c.Request().URL.Path)
	}
	body := api.ErrorEnvelope{Error: api.Error{Code: code, Message: msg, RequestID: rid}}
	// The header tells bothy's refusals from an app's own error answers.
	h := c.Response().Header()
	h.Set(headerBothyError, code)
	if code == api.CodeRateLimited {
		after := time.Second
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			after = ra.RetryAfter()
		}
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(max(after, time.Second).Seconds()))))
	}
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(status)
		return
	}
	_ = c.JSON(status, body)
}

// headerBothyError is set on every error answer bothy itself makes.
const headerBothyError = "X-Bothy-Error"

// notFound answers a request no route took: 501 for a method bothy
// knows nothing of, 404 otherwise.
func (s *Server) notFound(c *echo.Context) error {
	if !knownMethods[c.Request().Method] {
		return newError(http.StatusNotImplemented, api.CodeMethodNotAllowed, "method not implemented")
	}
	return echo.ErrNotFound
}
