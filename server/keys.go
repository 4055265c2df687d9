package server

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/supervisor"
)

func (s *Server) createKey(c *echo.Context) error {
	var req api.CreateKeyRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	key, secret, err := s.deps.Keys.Create(c.Request().Context(), req.Name, req.Admin)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, api.CreatedKey{Key: toKey(key), Secret: secret})
}

func (s *Server) listKeys(c *echo.Context) error {
	keys, err := s.deps.Keys.List(c.Request().Context())
	if err != nil {
		return err
	}
	out := api.KeyList{Keys: []api.Key{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, toKey(k))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) revokeKey(c *echo.Context) error {
	if err := s.deps.Keys.Revoke(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func toKey(k supervisor.Key) api.Key {
	out := api.Key{ID: k.ID, Name: k.Name, Admin: k.Admin, CreatedAt: k.CreatedAt.UTC()}
	if !k.RevokedAt.IsZero() {
		t := k.RevokedAt.UTC()
		out.RevokedAt = &t
	}
	return out
}
