package server

import (
	"github.com/labstack/echo/v5"

	"github.com/sandboxd/sandboxd/web"
)

// routes is the whole route table.
func (s *Server) routes() {
	e := s.e
	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)

	// WebSockets authenticate themselves: bearer key, or ticket and Origin.
	e.GET("/v1/sandboxes/:id/pty", s.ptySocket)

	v1 := e.Group("/v1", s.authenticate)
	v1.POST("/sandboxes", s.createSandbox)
	v1.GET("/sandboxes", s.listSandboxes)
	v1.GET("/sandboxes/:id", s.getSandbox)
	v1.PATCH("/sandboxes/:id", s.updateSandbox)
	v1.DELETE("/sandboxes/:id", s.deleteSandbox)
	v1.POST("/sandboxes/:id/stop", s.stopSandbox)
	v1.POST("/sandboxes/:id/start", s.startSandbox)
	v1.POST("/sandboxes/:id/snapshots", s.createSnapshot)
	v1.POST("/sandboxes/:id/restore", s.restoreSandbox)
	v1.GET("/snapshots", s.listSnapshots)
	v1.GET("/snapshots/:id", s.getSnapshot)
	v1.GET("/snapshots/:id/export", s.exportSnapshot)
	v1.GET("/snapshots/:id/diff", s.diffSnapshot)
	v1.POST("/snapshots/import", s.importSnapshot)
	v1.DELETE("/snapshots/:id", s.deleteSnapshot)
	v1.POST("/sandboxes/:id/pause", s.pauseSandbox)
	v1.POST("/sandboxes/:id/resume", s.resumeSandbox)
	v1.POST("/sandboxes/:id/exec", s.exec)
	v1.GET("/sandboxes/:id/files", s.getFile)
	v1.PUT("/sandboxes/:id/files", s.putFile)
	v1.DELETE("/sandboxes/:id/files", s.deleteFile)
	v1.GET("/sandboxes/:id/files/stat", s.statFile)
	v1.GET("/sandboxes/:id/files/watch", s.watchFiles)
	v1.POST("/sandboxes/:id/files/mkdir", s.mkdir)
	v1.POST("/sandboxes/:id/files/move", s.move)
	v1.POST("/sandboxes/:id/files/chmod", s.chmod)
	v1.GET("/sandboxes/:id/archive", s.getArchive)
	v1.PUT("/sandboxes/:id/archive", s.putArchive)
	v1.POST("/sandboxes/:id/pty/tickets", s.ptyTicket)
	v1.GET("/sandboxes/:id/pty/sessions", s.listPtySessions)
	v1.DELETE("/sandboxes/:id/pty/sessions/:session", s.killPtySession)

	v1.POST("/run", s.run)
	v1.GET("/pools", s.listPools)
	v1.GET("/apps", s.listApps)
	v1.PUT("/apps/:name", s.deployApp)
	v1.GET("/apps/:name", s.getApp)
	v1.DELETE("/apps/:name", s.deleteApp)
	v1.GET("/apps/:name/logs", s.appLogs)
	v1.Any("/apps/:name/invoke", s.invokeApp)
	v1.Any("/apps/:name/invoke/*", s.invokeApp)
	v1.GET("/usage", s.usage)

	v1.GET("/images", s.listImages)
	v1.POST("/images", s.buildImage, s.adminOnly)
	v1.DELETE("/images/*", s.removeImage, s.adminOnly)

	v1.POST("/keys", s.createKey, s.adminOnly)
	v1.GET("/keys", s.listKeys, s.adminOnly)
	v1.DELETE("/keys/:id", s.revokeKey, s.adminOnly)

	ui := echo.WrapHandler(web.Handler())
	e.GET("/", ui)
	e.GET("/static/*", ui)
	e.GET("/vendor/*", ui)

	e.RouteNotFound("/*", s.notFound)
}
