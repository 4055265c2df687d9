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
