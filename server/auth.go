package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/supervisor"
)

// keyOf authenticates "Authorization: Bearer <key>": a live key.
func (s *Server) keyOf(r *http.Request) (supervisor.Key, error) {
	secret, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(secret) == "" {
		return supervisor.Key{}, newError(http.StatusUnauthorized, api.CodeUnauthenticated, "missing API key: send the header Authorization: Bearer KEY")
	}
	key, err := s.deps.Keys.Authenticate(r.Context(), strings.TrimSpace(secret))
	if errors.Is(err, supervisor.ErrUnauthenticated) {
		return supervisor.Key{}, newError(http.StatusUnauthorized, api.CodeUnauthenticated, "invalid or revoked API key")
	}
	return key, err
}

// caller is the authenticated key of the request.
func caller(c *echo.Context) supervisor.Key {
	k, _ := c.Get(ctxKey).(supervisor.Key)
	return k
}
