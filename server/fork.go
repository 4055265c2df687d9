package server

import (
	"net/http"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
)

// forkSandbox makes count new sandboxes from a sandbox's filesystem as it is
// now (orchestrator.Fork).
func (s *Server) forkSandbox(c *echo.Context) error {
	var req api.ForkRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	snap, made, err := s.deps.Orchestrator.Fork(c.Request().Context(), caller(c).ID, c.Param("id"), req.Count, req.Labels)
	if err != nil {
		return err
	}
	out := api.ForkResult{Snapshot: snap, Sandboxes: make([]api.Sandbox, 0, len(made))}
	for _, sb := range made {
		out.Sandboxes = append(out.Sandboxes, toSandbox(sb))
	}
	return c.JSON(http.StatusCreated, out)
}
