package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/supervisor"
)

// authenticate requires "Authorization: Bearer <key>" with a live key.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		h := c.Request().Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || strings.TrimSpace(secret) == "" {
			return newError(http.StatusUnauthorized, api.CodeUnauthenticated, "missing API key: send the header Authorization: Bearer KEY")
		}
		key, err := s.deps.Keys.Authenticate(c.Request().Context(), strings.TrimSpace(secret))
		if errors.Is(err, supervisor.ErrUnauthenticated) {
			return newError(http.StatusUnauthorized, api.CodeUnauthenticated, "invalid or revoked API key")
		}
		if err != nil {
			return err
		}
		c.Set(ctxKey, key)
		return next(c)
	}
}

// adminOnly admits admin keys only.
func (s *Server) adminOnly(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if !caller(c).Admin {
			return newError(http.StatusForbidden, api.CodeForbidden, "this needs an admin key")
		}
		return next(c)
	}
}

// caller is the authenticated key of the request.
func caller(c *echo.Context) supervisor.Key {
	k, _ := c.Get(ctxKey).(supervisor.Key)
	return k
}
