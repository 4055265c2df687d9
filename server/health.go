package server

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
)

// healthz says the process serves.
func (s *Server) healthz(c *echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyz says whether sandboxes can be made now: the engine and the database
// answer and the warmed images are built. It also reports whether the engine
// remaps users.
func (s *Server) readyz(c *echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 3*time.Second)
	defer cancel()
	r := api.Readiness{Ready: true, Images: s.deps.Images.Status(), SandboxPoolsWarm: s.deps.Orchestrator.PoolsWarm()}
	if s.deps.Isolate != nil {
		r.PoolsWarm = s.deps.Isolate.Ready()
	}
	info, err := s.deps.Orchestrator.Engine(ctx)
	if err != nil {
		r.Ready, r.Error = false, "engine: "+err.Error()
	}
	r.DiskLimits = info.DiskLimits
	if r.DiskLimits == "" {
		r.DiskLimits = "none"
	}
	r.Engine = api.EngineStatus{Version: info.Version, APIVersion: info.APIVersion, UsernsRemap: info.UsernsRemap, CgroupV2: info.CgroupV2}
	if err := s.deps.DB.PingContext(ctx); err != nil {
		r.Ready, r.Error = false, "database: "+err.Error()
	}
	for name, st := range r.Images {
		if st != "ready" {
			r.Ready = false
			if r.Error == "" {
				r.Error = "image " + name + ": " + st
			}
		}
	}
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
	}
	return c.JSON(status, r)
}
