package server

import (
	"net/http"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/sandboxd/sandboxd/openapi"
	"github.com/sandboxd/sandboxd/process"
	"github.com/sandboxd/sandboxd/web"
)

// routes is the whole route table. Every route says how much of a request
// body its handler may read, and the limit holds before any of it is read:
//   - noBody: routes that take none (a stray body is refused past 64 KiB);
//   - jsonBody: a JSON document, read whole (Config.BodyLimit);
//   - streamed: the handler streams the body on (to a sandbox, or to a
//     spooled archive) under its own limit (Config.MaxFileBytes), never
//     holding more than a frame of it in memory;
//   - appBody: an app request, read whole (maxAppBody);
//   - stdinBody: one write to a process's stdin, read whole
//     (process.MaxStdinWrite).
func (s *Server) routes() {
	e := s.e
	noBody := middleware.BodyLimit(64 << 10)
	jsonBody := middleware.BodyLimit(s.cfg.BodyLimit)
	streamed := middleware.BodyLimit(s.cfg.MaxFileBytes)
	appBody := middleware.BodyLimit(maxAppBody)
	stdinBody := middleware.BodyLimit(process.MaxStdinWrite)

	e.GET("/healthz", s.healthz, noBody)
	e.GET("/readyz", s.readyz, noBody)
	// Off the tenant API: an admin's key, or a listener of its own
	// (--metrics-listen).
	e.GET("/metrics", echo.WrapHandler(s.metrics.handler()), noBody, s.authenticate, s.adminOnly)
	e.GET("/openapi.json", openAPI, noBody)

	// WebSockets authenticate themselves: bearer key, or ticket and Origin.
	e.GET("/v1/sandboxes/:id/pty", s.ptySocket, noBody)
	e.GET("/v1/sandboxes/:id/exec", s.execSocket, noBody)

	v1 := e.Group("/v1", s.authenticate)
	v1.POST("/sandboxes", s.createSandbox, jsonBody)
	v1.GET("/sandboxes", s.listSandboxes, noBody)
	v1.GET("/sandboxes/:id", s.getSandbox, noBody)
	v1.PATCH("/sandboxes/:id", s.updateSandbox, jsonBody)
	v1.DELETE("/sandboxes/:id", s.deleteSandbox, noBody)
	v1.POST("/sandboxes/:id/stop", s.stopSandbox, jsonBody)
	v1.POST("/sandboxes/:id/start", s.startSandbox, jsonBody)
	v1.POST("/sandboxes/:id/snapshots", s.createSnapshot, jsonBody)
	v1.POST("/sandboxes/:id/restore", s.restoreSandbox, jsonBody)
	v1.POST("/sandboxes/:id/fork", s.forkSandbox, jsonBody)
	v1.GET("/snapshots", s.listSnapshots, noBody)
	v1.GET("/snapshots/:id", s.getSnapshot, noBody)
	v1.GET("/snapshots/:id/export", s.exportSnapshot, noBody)
	v1.GET("/snapshots/:id/diff", s.diffSnapshot, noBody)
	v1.POST("/snapshots/import", s.importSnapshot, streamed)
	v1.DELETE("/snapshots/:id", s.deleteSnapshot, noBody)
	v1.POST("/sandboxes/:id/pause", s.pauseSandbox, jsonBody)
	v1.POST("/sandboxes/:id/resume", s.resumeSandbox, jsonBody)
	v1.POST("/sandboxes/:id/exec", s.exec, jsonBody)
	v1.GET("/sandboxes/:id/files", s.getFile, noBody)
	v1.PUT("/sandboxes/:id/files", s.putFile, streamed)
	v1.DELETE("/sandboxes/:id/files", s.deleteFile, noBody)
	v1.GET("/sandboxes/:id/files/stat", s.statFile, noBody)
	v1.GET("/sandboxes/:id/files/watch", s.watchFiles, noBody)
	v1.POST("/sandboxes/:id/files/mkdir", s.mkdir, jsonBody)
	v1.POST("/sandboxes/:id/files/move", s.move, jsonBody)
	v1.POST("/sandboxes/:id/files/chmod", s.chmod, jsonBody)
	v1.GET("/sandboxes/:id/archive", s.getArchive, noBody)
	v1.PUT("/sandboxes/:id/archive", s.putArchive, streamed)
	v1.POST("/sandboxes/:id/pty/tickets", s.ptyTicket, jsonBody)
	v1.GET("/sandboxes/:id/pty/sessions", s.listPtySessions, noBody)
	v1.DELETE("/sandboxes/:id/pty/sessions/:session", s.killPtySession, noBody)
	v1.POST("/sandboxes/:id/processes", s.startProcess, jsonBody)
	v1.GET("/sandboxes/:id/processes", s.listProcesses, noBody)
	v1.GET("/sandboxes/:id/processes/:pid", s.getProcess, noBody)
	v1.DELETE("/sandboxes/:id/processes/:pid", s.killProcess, noBody)
	v1.GET("/sandboxes/:id/processes/:pid/logs", s.processLogs, noBody)
	v1.GET("/sandboxes/:id/processes/:pid/wait", s.waitProcess, noBody)
	v1.POST("/sandboxes/:id/processes/:pid/signal", s.signalProcess, jsonBody)
	v1.POST("/sandboxes/:id/processes/:pid/stdin", s.writeStdin, stdinBody)
	v1.POST("/sandboxes/:id/processes/:pid/stdin/close", s.closeStdin, noBody)
	v1.POST("/sandboxes/:id/ports", s.exposePort, jsonBody)
	v1.GET("/sandboxes/:id/ports", s.listPorts, noBody)
	v1.DELETE("/sandboxes/:id/ports/:port", s.unexposePort, noBody)
	v1.GET("/sandboxes/:id/ports/:port/wait", s.waitPort, noBody)
	v1.Any("/sandboxes/:id/ports/:port/*", s.proxyPort, streamed)

	v1.POST("/run", s.run, jsonBody)
	v1.GET("/pools", s.listPools, noBody, s.adminOnly)
	v1.GET("/apps", s.listApps, noBody)
	v1.PUT("/apps/:name", s.deployApp, jsonBody)
	v1.GET("/apps/:name", s.getApp, noBody)
	v1.DELETE("/apps/:name", s.deleteApp, noBody)
	v1.GET("/apps/:name/logs", s.appLogs, noBody)
	v1.Any("/apps/:name/invoke", s.invokeApp, appBody)
	v1.Any("/apps/:name/invoke/*", s.invokeApp, appBody)
	v1.GET("/usage", s.usage, noBody)

	v1.GET("/images", s.listImages, noBody)
	v1.POST("/images", s.buildImage, jsonBody, s.adminOnly)
	v1.DELETE("/images/*", s.removeImage, noBody, s.adminOnly)

	v1.POST("/keys", s.createKey, jsonBody, s.adminOnly)
	v1.GET("/keys", s.listKeys, noBody, s.adminOnly)
	v1.PATCH("/keys/:id", s.updateKey, jsonBody, s.adminOnly)
	v1.DELETE("/keys/:id", s.revokeKey, noBody, s.adminOnly)

	ui := echo.WrapHandler(web.Handler())
	e.GET("/", ui, noBody)
	e.GET("/docs", ui, noBody)
	e.GET("/static/*", ui, noBody)
	e.GET("/vendor/*", ui, noBody)

	e.RouteNotFound("/*", s.notFound)
}

// openAPI serves the API's OpenAPI 3.1 document (package openapi; the tests
// hold it to this table both ways).
func openAPI(c *echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openapi.Document())
}
