package server

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/snapshot"
)

// createSnapshot checkpoints a running, paused or stopped sandbox.
func (s *Server) createSnapshot(c *echo.Context) error {
	var req api.CreateSnapshotRequest
	if err := bind(c, &req, true); err != nil {
		return err
	}
	ctx, owner := c.Request().Context(), caller(c).ID
	id, err := s.deps.Orchestrator.Checkpoint(ctx, owner, c.Param("id"), req.Name, req.Labels)
	if err != nil {
		return err
	}
	sn, err := s.deps.Snapshots.Get(ctx, owner, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toSnapshot(sn))
}

// restoreSandbox rolls a sandbox back to a snapshot, in place, keeping its ID.
func (s *Server) restoreSandbox(c *echo.Context) error {
	var req api.RestoreRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if req.Snapshot == "" {
		return badRequest("snapshot: required")
	}
	ctx, owner, id := c.Request().Context(), caller(c).ID, c.Param("id")
	var sb orchestrator.Sandbox
	var err error
	if len(req.Paths) > 0 {
		// Only the named paths; the rest of the sandbox is untouched.
		if err = s.deps.Files.RestoreSnapshotPaths(ctx, fsapi.Target{Owner: owner, Sandbox: id}, req.Snapshot, req.Paths); err == nil {
			sb, err = s.deps.Orchestrator.Get(ctx, owner, id)
		}
	} else {
		sb, err = s.deps.Orchestrator.RestoreSnapshot(ctx, owner, id, req.Snapshot)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSandbox(sb))
}

func (s *Server) listSnapshots(c *echo.Context) error {
	f := snapshot.Filter{SandboxID: c.QueryParam("sandbox"), Labels: map[string]string{}}
	for _, l := range c.Request().URL.Query()["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return badRequest("label: want key=value, got " + strconv.Quote(l))
		}
		f.Labels[k] = v
	}
	list, err := s.deps.Snapshots.List(c.Request().Context(), caller(c).ID, f)
	if err != nil {
		return err
	}
	out := api.SnapshotList{Snapshots: make([]api.Snapshot, 0, len(list))}
	for _, sn := range list {
		out.Snapshots = append(out.Snapshots, toSnapshot(sn))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getSnapshot(c *echo.Context) error {
	sn, err := s.deps.Snapshots.Get(c.Request().Context(), caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSnapshot(sn))
}

func (s *Server) deleteSnapshot(c *echo.Context) error {
	if err := s.deps.Snapshots.Delete(c.Request().Context(), caller(c).ID, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// exportSnapshot streams a snapshot as a portable archive.
func (s *Server) exportSnapshot(c *echo.Context) error {
	id := c.Param("id")
	if _, err := s.deps.Snapshots.Get(c.Request().Context(), caller(c).ID, id); err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Disposition", `attachment; filename="`+id+`.tar"`)
	w.WriteHeader(http.StatusOK)
	// The head goes out now: the archive may wait its turn to be spooled.
	_ = http.NewResponseController(w).Flush()
	if err := s.deps.Snapshots.Export(c.Request().Context(), caller(c).ID, id, w); err != nil {
		s.log.Warn("snapshot export broke off", "err", err, "snapshot_id", id)
	}
	return nil
}

// importSnapshot verifies an exported archive and keeps it as a new snapshot.
func (s *Server) importSnapshot(c *echo.Context) error {
	body := &limitedBody{r: c.Request().Body, left: s.cfg.MaxFileBytes}
	sn, err := s.deps.Snapshots.Import(c.Request().Context(), caller(c).ID, body, s.cfg.MaxFileBytes)
	if body.over {
		return echo.ErrStatusRequestEntityTooLarge
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toSnapshot(sn))
}

// diffSnapshot lists what changed from one snapshot to another, or to a
// sandbox's current state (?to=ID of either).
func (s *Server) diffSnapshot(c *echo.Context) error {
	ctx, owner, from, to := c.Request().Context(), caller(c).ID, c.Param("id"), c.QueryParam("to")
	if to == "" {
		return badRequest("to: name a snapshot or a sandbox")
	}
	out := api.Diff{From: from, To: to, Changes: []api.DiffEntry{}}
	add := func(path, kind, typ string, size int64) {
		out.Changes = append(out.Changes, api.DiffEntry{Path: path, Change: kind, Type: typ, Size: size})
	}
	if strings.HasPrefix(to, "sb-") {
		changes, err := s.deps.Orchestrator.DiffSandbox(ctx, owner, from, to)
		if err != nil {
			return err
		}
		for _, ch := range changes {
			add(ch.Path, ch.Kind, ch.Type, ch.Size)
		}
	} else {
		sn, err := s.deps.Snapshots.Get(ctx, owner, to)
		if err != nil {
			return err
		}
		changes, err := s.deps.Snapshots.Diff(ctx, owner, from, sn.Image)
		if err != nil {
			return err
		}
		for _, ch := range changes {
			add(ch.Path, ch.Kind, ch.Type, ch.Size)
		}
	}
	return c.JSON(http.StatusOK, out)
}

func toSnapshot(sn snapshot.Snapshot) api.Snapshot {
	labels := sn.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return api.Snapshot{ID: sn.ID, Name: sn.Name, SandboxID: sn.SandboxID, Parent: sn.Parent, BaseImage: sn.BaseImage,
		Labels: labels, SizeBytes: sn.Size, CreatedAt: sn.CreatedAt}
}
