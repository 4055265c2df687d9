package server

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/snapshot"
)

// maxFork bounds one fork's count.
const maxFork = 16

// forkSandbox makes count new sandboxes from a sandbox's filesystem as it is
// now: one checkpoint, then count creates from it, two at a time (a
// container start is what each costs, and two cores start two at once).
// Each new sandbox has the source's limits, environment, user, working
// directory and lifetime settings, and the labels the request gives. All or
// nothing: when one fails, those made are deleted.
func (s *Server) forkSandbox(c *echo.Context) error {
	var req api.ForkRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if req.Count < 1 || req.Count > maxFork {
		return badRequest(fmt.Sprintf("count: want 1 to %d, got %d", maxFork, req.Count))
	}
	ctx, owner, id := c.Request().Context(), caller(c).ID, c.Param("id")
	var src orchestrator.Sandbox
	var sn snapshot.Snapshot
	err := s.deps.Orchestrator.WithSandbox(ctx, owner, id, func(sb orchestrator.Sandbox) error {
		src = sb
		var err error
		sn, err = s.deps.Snapshots.Create(ctx, owner, snapshot.Source{SandboxID: sb.ID, ContainerID: sb.ContainerID, Image: sb.Image},
			"fork of "+sb.ID, map[string]string{"bothy.fork_of": sb.ID})
		return err
	})
	if err != nil {
		return err
	}
	idle, ttl := src.Spec.IdleTimeout, src.Spec.TTLSeconds
	opts := orchestrator.CreateOptions{
		Image: sn.Image, Env: src.Spec.Env, CPUs: src.Spec.CPUs, MemoryMB: src.Spec.MemoryMB, Pids: src.Spec.Pids,
		DiskMB: src.Spec.DiskMB, Network: src.Spec.Network, IdleTimeout: &idle, IdlePolicy: src.Spec.IdlePolicy,
		TTLSeconds: &ttl, User: src.Spec.User, Workdir: src.Spec.Workdir, Labels: req.Labels,
	}
	made := make([]orchestrator.Sandbox, req.Count)
	errs := make([]error, req.Count)
	var wg sync.WaitGroup
	slots := make(chan struct{}, 2)
	for i := range req.Count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			made[i], _, errs[i] = s.deps.Orchestrator.Create(ctx, owner, opts)
		}()
	}
	wg.Wait()
	var firstErr error
	for _, err := range errs {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		for i, sb := range made {
			if errs[i] == nil {
				_ = s.deps.Orchestrator.Delete(context.WithoutCancel(ctx), owner, sb.ID)
			}
		}
		return firstErr
	}
	out := api.ForkResult{Snapshot: sn.ID, Sandboxes: make([]api.Sandbox, 0, len(made))}
	for _, sb := range made {
		out.Sandboxes = append(out.Sandboxes, toSandbox(sb))
	}
	return c.JSON(http.StatusCreated, out)
}
