package server

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/orchestrator"
)

func (s *Server) createSandbox(c *echo.Context) error {
	var req api.CreateSandboxRequest
	if err := bind(c, &req, true); err != nil {
		return err
	}
	sb, replayed, err := s.deps.Orchestrator.Create(c.Request().Context(), caller(c).ID, orchestrator.CreateOptions{
		Image: req.Image, Snapshot: req.Snapshot, Env: req.Env, CPUs: req.CPUs, MemoryMB: req.MemoryMB, Pids: req.Pids, DiskMB: req.DiskMB,
		Network: req.Network, IdleTimeout: req.IdleTimeoutS, IdlePolicy: req.IdlePolicy, TTLSeconds: req.TTLS,
		User: req.User, Workdir: req.Workdir, Labels: req.Labels, KEP: req.KEP,
		IdempotencyKey: c.Request().Header.Get("Idempotency-Key"),
	})
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
		status = http.StatusOK
	}
	return c.JSON(status, toSandbox(sb))
}

func (s *Server) listSandboxes(c *echo.Context) error {
	f := orchestrator.ListFilter{Labels: map[string]string{}}
	q := c.Request().URL.Query()
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return badRequest("label: want key=value, got " + strconv.Quote(l))
		}
		f.Labels[k] = v
	}
	if st := q.Get("state"); st != "" {
		if !orchestrator.State(st).Valid() {
			return badRequest("state: unknown state " + strconv.Quote(st))
		}
		f.State = orchestrator.State(st)
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return badRequest("limit: want 1 to 1000")
		}
		f.Limit = n
	}
	if cur := q.Get("cursor"); cur != "" {
		n, err := strconv.ParseInt(cur, 10, 64)
		if err != nil || n < 0 {
			return badRequest("cursor: not a cursor this server gave")
		}
		f.After = n
	}
	list, next, err := s.deps.Orchestrator.List(c.Request().Context(), caller(c).ID, f)
	if err != nil {
		return err
	}
	out := api.SandboxList{Sandboxes: make([]api.Sandbox, 0, len(list))}
	for _, sb := range list {
		out.Sandboxes = append(out.Sandboxes, toSandbox(sb))
	}
	if next > 0 {
		out.NextCursor = strconv.FormatInt(next, 10)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getSandbox(c *echo.Context) error {
	ctx := c.Request().Context()
	sb, err := s.deps.Orchestrator.Get(ctx, caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	out := toSandbox(sb)
	out.DiskFull = s.deps.Orchestrator.DiskFull(ctx, sb)
	return c.JSON(http.StatusOK, out)
}

func (s *Server) updateSandbox(c *echo.Context) error {
	var req api.UpdateSandboxRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	sb, err := s.deps.Orchestrator.Update(c.Request().Context(), caller(c).ID, c.Param("id"), orchestrator.UpdateOptions{
		Labels: req.Labels, IdleTimeout: req.IdleTimeoutS, IdlePolicy: req.IdlePolicy, TTLSeconds: req.TTLS,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSandbox(sb))
}

func (s *Server) deleteSandbox(c *echo.Context) error {
	if err := s.deps.Orchestrator.Delete(c.Request().Context(), caller(c).ID, c.Param("id")); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) stopSandbox(c *echo.Context) error {
	sb, err := s.deps.Orchestrator.Stop(c.Request().Context(), caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSandbox(sb))
}

func (s *Server) startSandbox(c *echo.Context) error {
	sb, err := s.deps.Orchestrator.Start(c.Request().Context(), caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSandbox(sb))
}

// toSandbox is the wire form of a sandbox. Environment values are not echoed
// back (they often hold secrets); their names are.
func toSandbox(sb orchestrator.Sandbox) api.Sandbox {
	out := api.Sandbox{
		ID: sb.ID, State: string(sb.State), Image: sb.Image,
		CPUs: sb.Spec.CPUs, MemoryMB: sb.Spec.MemoryMB, Pids: sb.Spec.Pids, DiskMB: sb.Spec.DiskMB, Network: sb.Spec.Network,
		IdleTimeoutS: sb.Spec.IdleTimeout, IdlePolicy: sb.Spec.IdlePolicy, TTLS: sb.Spec.TTLSeconds, User: sb.Spec.User, Workdir: sb.Spec.Workdir,
		KEP: sb.Spec.KEP, Labels: sb.Labels, Error: sb.Error, AwakeBy: sb.AwakeBy,
		CreatedAt: sb.CreatedAt.UTC(), UpdatedAt: sb.UpdatedAt.UTC(), LastActiveAt: sb.LastActiveAt.UTC(),
	}
	if out.IdlePolicy == "" {
		out.IdlePolicy = orchestrator.IdleActivity
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for k := range sb.Spec.Env {
		out.EnvKeys = append(out.EnvKeys, k)
	}
	sort.Strings(out.EnvKeys)
	if t := sb.ExpiresAt(); !t.IsZero() {
		t = t.UTC()
		out.ExpiresAt = &t
	}
	return out
}

func (s *Server) pauseSandbox(c *echo.Context) error {
	sb, err := s.deps.Orchestrator.Pause(c.Request().Context(), caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSandbox(sb))
}

func (s *Server) resumeSandbox(c *echo.Context) error {
	sb, err := s.deps.Orchestrator.Resume(c.Request().Context(), caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSandbox(sb))
}
