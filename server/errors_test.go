package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/ports"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err    error
		status int
		code   string
	}{
		{cerrdefs.ErrInvalidArgument.WithMessage("x"), 400, api.CodeInvalidArgument},
		{fmt.Errorf("wrapped: %w", cerrdefs.ErrNotFound), 404, api.CodeNotFound},
		{cerrdefs.ErrConflict, 409, api.CodeConflict},
		{cerrdefs.ErrUnavailable, 503, api.CodeUnavailable},
		{context.DeadlineExceeded, 503, api.CodeUnavailable},
		{echo.ErrStatusRequestEntityTooLarge, 413, api.CodeTooLarge},
		{echo.ErrMethodNotAllowed, 405, api.CodeMethodNotAllowed},
		{newError(http.StatusUnauthorized, api.CodeUnauthenticated, "no"), 401, api.CodeUnauthenticated},
		{errors.New("disk on fire at /var/lib/secret"), 500, api.CodeInternal},
		{fmt.Errorf("follow: %w", context.Canceled), statusClientClosed, api.CodeCanceled},
	}
	for _, tc := range tests {
		status, code, msg := classify(tc.err)
		if status != tc.status || code != tc.code {
			t.Errorf("%v: %d %s, want %d %s", tc.err, status, code, tc.status, tc.code)
		}
		if status == 500 && msg != "internal error" {
			t.Errorf("a 500 leaked its cause: %q", msg)
		}
	}
}

// TestExpectedOutcomesAreNotErrors: a client that went away and a port that
// nothing listens on are answers, not failures of bothy's: they are not
// logged as errors.
func TestExpectedOutcomesAreNotErrors(t *testing.T) {
	for _, err := range []error{context.Canceled, fmt.Errorf("proxy: %w", ports.ErrNotListening)} {
		if status, code, _ := classify(err); !expected(status, code) {
			t.Errorf("%v (%d %s) is counted as a failure", err, status, code)
		}
	}
	if status, code, _ := classify(errors.New("boom")); expected(status, code) {
		t.Error("an internal error is counted as expected")
	}
}
