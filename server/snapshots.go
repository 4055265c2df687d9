package server

import (
	"context"
	"io"
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
	if len(req.Paths) > 0 {
		sn, err := s.deps.Snapshots.Get(c.Request().Context(), caller(c).ID, req.Snapshot)
		if err != nil {
			return err
		}
		return s.restorePaths(c, sn.ID, req.Paths)
	}
	sb, err := s.deps.Orchestrator.RestoreSnapshot(c.Request().Context(), caller(c).ID, c.Param("id"), req.Snapshot)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSandbox(sb))
}

// restorePaths puts back only the named paths as they are in a snapshot; the
// rest of the sandbox is untouched.
func (s *Server) restorePaths(c *echo.Context, snapID string, paths []string) error {
	owner, id := caller(c).ID, c.Param("id")
	err := s.deps.Files.RestorePaths(c.Request().Context(), fsapi.Target{Owner: owner, Sandbox: id}, paths,
		func(ctx context.Context, p string) (io.ReadCloser, bool, error) {
			return s.deps.Snapshots.ReadPath(ctx, owner, snapID, p)
		})
	if err != nil {
		return err
	}
	sb, err := s.deps.Orchestrator.Get(c.Request().Context(), owner, id)
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
	var changes []snapshot.Change
	var err error
	if strings.HasPrefix(to, "sb-") {
		err = s.deps.Orchestrator.WithSandbox(ctx, owner, to, func(sb orchestrator.Sandbox) error {
			var err error
			changes, err = s.deps.Snapshots.DiffSandbox(ctx, owner, from, snapshot.Source{SandboxID: sb.ID, ContainerID: sb.ContainerID, Image: sb.Image})
			return err
		})
	} else {
		var sn snapshot.Snapshot
		if sn, err = s.deps.Snapshots.Get(ctx, owner, to); err == nil {
			changes, err = s.deps.Snapshots.Diff(ctx, owner, from, sn.Image)
		}
	}
	if err != nil {
		return err
	}
	out := api.Diff{From: from, To: to, Changes: make([]api.DiffEntry, 0, len(changes))}
	for _, ch := range changes {
		out.Changes = append(out.Changes, api.DiffEntry{Path: ch.Path, Change: ch.Kind, Type: ch.Type, Size: ch.Size})
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
