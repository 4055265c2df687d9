package server

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/supervisor"
)

func (s *Server) createKey(c *echo.Context) error {
	var req api.CreateKeyRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	ctx := c.Request().Context()
	key, secret, err := s.deps.Keys.Create(ctx, req.Name, req.Admin)
	if err != nil {
		return err
	}
	if req.Quota != nil {
		withQuota, err := s.deps.Keys.SetQuota(ctx, key.ID, fromQuota(*req.Quota))
		if err != nil {
			_ = s.deps.Keys.Revoke(context.WithoutCancel(ctx), key.ID)
			return err
		}
		key = withQuota
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

func (s *Server) updateKey(c *echo.Context) error {
	var req api.UpdateKeyRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if req.Quota == nil {
		return badRequest("quota: give the key's quota")
	}
	key, err := s.deps.Keys.SetQuota(c.Request().Context(), c.Param("id"), fromQuota(*req.Quota))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toKey(key))
}

func fromQuota(q api.Quota) supervisor.Quota {
	return supervisor.Quota{Sandboxes: q.Sandboxes, Running: q.Running, MemoryMB: q.MemoryMB, CPUs: q.CPUs,
		DiskMB: q.DiskMB, Snapshots: q.Snapshots, SnapshotBytes: q.SnapshotBytes}
}

func toQuota(q supervisor.Quota) api.Quota {
	return api.Quota{Sandboxes: q.Sandboxes, Running: q.Running, MemoryMB: q.MemoryMB, CPUs: q.CPUs,
		DiskMB: q.DiskMB, Snapshots: q.Snapshots, SnapshotBytes: q.SnapshotBytes}
}

func (s *Server) revokeKey(c *echo.Context) error {
	if err := s.deps.Keys.Revoke(c.Request().Context(), c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func toKey(k supervisor.Key) api.Key {
	out := api.Key{ID: k.ID, Name: k.Name, Admin: k.Admin, CreatedAt: k.CreatedAt.UTC(),
		Quota: toQuota(k.Quota), QuotaSet: toQuota(k.OwnQuota)}
	if !k.RevokedAt.IsZero() {
		t := k.RevokedAt.UTC()
		out.RevokedAt = &t
	}
	return out
}
