package server

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/openapi"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/web"
)

// Route classes (bounds.Class), by what a route reads and answers:
//   - none: takes no body (a stray one is refused past 64 KiB);
//   - json: a JSON document, read whole (Config.BodyLimit), reserved from
//     the body budget first;
//   - stream: the handler streams the body on (to a sandbox, or to a
//     spooled archive) under Config.MaxFileBytes, a frame at a time;
//   - app: an app request, read whole (maxAppBody), reserved first;
//   - stdin: one write to a process's stdin (process.MaxStdinWrite);
//   - socket: a WebSocket, whose frames the socket bounds itself;
//   - proxy: a request to a sandbox's port, streamed both ways.
//
// Each says too whether its answer streams (the request may last as long as
// the client keeps reading).
type classes struct {
	none, noneStream, json, jsonStream, stream, streamStream, app, stdin, socket, proxy bounds.Class
}

func (s *Server) classes() classes {
	return classes{
		none:         bounds.Class{Name: "none", Body: 64 << 10},
		noneStream:   bounds.Class{Name: "none", Body: 64 << 10, Stream: true},
		json:         bounds.Class{Name: "json", Body: s.cfg.BodyLimit, Whole: true},
		jsonStream:   bounds.Class{Name: "json", Body: s.cfg.BodyLimit, Whole: true, Stream: true},
		stream:       bounds.Class{Name: "stream", Body: s.cfg.MaxFileBytes},
		streamStream: bounds.Class{Name: "stream", Body: s.cfg.MaxFileBytes, Stream: true},
		app:          bounds.Class{Name: "app", Body: maxAppBody, Whole: true},
		stdin:        bounds.Class{Name: "stdin", Body: process.MaxStdinWrite, Whole: true},
		socket:       bounds.Class{Name: "socket", Body: 64 << 10, Stream: true},
		proxy:        bounds.Class{Name: "proxy", Body: s.cfg.MaxFileBytes, Stream: true},
	}
}

// kindClass is the class of a mounted route of kind.
func (s *Server) kindClass(kind string) bounds.Class {
	c := s.classes()
	switch kind {
	case bounds.KindJSON:
		return c.json
	case bounds.KindStream:
		return c.streamStream
	case bounds.KindRPC:
		return bounds.Class{Name: "rpc", Body: s.cfg.BodyLimit, Whole: true, Stream: true}
	default:
		return c.none
	}
}

// routes is the whole route table. Every route is registered through route
// with its class: the bounds of the class hold before its handler (and its
// authentication) runs.
func (s *Server) routes() {
	c := s.classes()
	const auth, admin = withKey, withKey | adminKey
	const get, post, put, patch, del = http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete

	s.route(get, "/healthz", c.none, s.healthz)
	s.route(get, "/readyz", c.none, s.readyz)
	// Off the tenant API: an admin's key, or a listener of its own
	// (--metrics-listen).
	s.route(get, "/metrics", c.none, echo.WrapHandler(s.metrics.handler()), admin)
	s.route(get, "/openapi.json", c.none, openAPI)

	// WebSockets authenticate themselves: bearer key, or ticket and Origin.
	s.route(get, "/v1/sandboxes/:id/pty", c.socket, s.ptySocket)
	s.route(get, "/v1/sandboxes/:id/exec", c.socket, s.execSocket)

	s.route(post, "/v1/sandboxes", c.json, s.createSandbox, auth)
	s.route(get, "/v1/sandboxes", c.none, s.listSandboxes, auth)
	s.route(get, "/v1/sandboxes/:id", c.none, s.getSandbox, auth)
	s.route(patch, "/v1/sandboxes/:id", c.json, s.updateSandbox, auth)
	s.route(del, "/v1/sandboxes/:id", c.none, s.deleteSandbox, auth)
	s.route(post, "/v1/sandboxes/:id/stop", c.json, emptyBody(s.stopSandbox), auth)
	s.route(post, "/v1/sandboxes/:id/start", c.json, emptyBody(s.startSandbox), auth)
	s.route(post, "/v1/sandboxes/:id/snapshots", c.json, s.createSnapshot, auth)
	s.route(post, "/v1/sandboxes/:id/restore", c.json, s.restoreSandbox, auth)
	s.route(post, "/v1/sandboxes/:id/fork", c.json, s.forkSandbox, auth)
	s.route(get, "/v1/snapshots", c.none, s.listSnapshots, auth)
	s.route(get, "/v1/snapshots/:id", c.none, s.getSnapshot, auth)
	s.route(get, "/v1/snapshots/:id/export", c.noneStream, s.exportSnapshot, auth)
	s.route(get, "/v1/snapshots/:id/diff", c.none, s.diffSnapshot, auth)
	s.route(post, "/v1/snapshots/import", c.stream, s.importSnapshot, auth)
	s.route(del, "/v1/snapshots/:id", c.none, s.deleteSnapshot, auth)
	s.route(post, "/v1/sandboxes/:id/pause", c.json, emptyBody(s.pauseSandbox), auth)
	s.route(post, "/v1/sandboxes/:id/resume", c.json, emptyBody(s.resumeSandbox), auth)
	s.route(post, "/v1/sandboxes/:id/exec", c.jsonStream, s.exec, auth)
	s.route(get, "/v1/sandboxes/:id/files", c.noneStream, s.getFile, auth)
	s.route(put, "/v1/sandboxes/:id/files", c.stream, s.putFile, auth)
	s.route(del, "/v1/sandboxes/:id/files", c.none, s.deleteFile, auth)
	s.route(get, "/v1/sandboxes/:id/files/stat", c.none, s.statFile, auth)
	s.route(get, "/v1/sandboxes/:id/files/watch", c.noneStream, s.watchFiles, auth)
	s.route(post, "/v1/sandboxes/:id/files/mkdir", c.json, s.mkdir, auth)
	s.route(post, "/v1/sandboxes/:id/files/move", c.json, s.move, auth)
	s.route(post, "/v1/sandboxes/:id/files/chmod", c.json, s.chmod, auth)
	s.route(get, "/v1/sandboxes/:id/archive", c.noneStream, s.getArchive, auth)
	s.route(put, "/v1/sandboxes/:id/archive", c.stream, s.putArchive, auth)
	s.route(post, "/v1/sandboxes/:id/pty/tickets", c.json, emptyBody(s.ptyTicket), auth)
	s.route(get, "/v1/sandboxes/:id/pty/sessions", c.none, s.listPtySessions, auth)
	s.route(del, "/v1/sandboxes/:id/pty/sessions/:session", c.none, s.killPtySession, auth)
	s.route(post, "/v1/sandboxes/:id/processes", c.json, s.startProcess, auth)
	s.route(get, "/v1/sandboxes/:id/processes", c.none, s.listProcesses, auth)
	s.route(get, "/v1/sandboxes/:id/processes/:pid", c.none, s.getProcess, auth)
	s.route(del, "/v1/sandboxes/:id/processes/:pid", c.none, s.killProcess, auth)
	s.route(get, "/v1/sandboxes/:id/processes/:pid/logs", c.noneStream, s.processLogs, auth)
	s.route(get, "/v1/sandboxes/:id/processes/:pid/wait", c.none, s.waitProcess, auth)
	s.route(post, "/v1/sandboxes/:id/processes/:pid/signal", c.json, s.signalProcess, auth)
	s.route(post, "/v1/sandboxes/:id/processes/:pid/stdin", c.stdin, s.writeStdin, auth)
	s.route(post, "/v1/sandboxes/:id/processes/:pid/stdin/close", c.none, s.closeStdin, auth)
	s.route(post, "/v1/sandboxes/:id/ports", c.json, s.exposePort, auth)
	s.route(get, "/v1/sandboxes/:id/ports", c.none, s.listPorts, auth)
	s.route(del, "/v1/sandboxes/:id/ports/:port", c.none, s.unexposePort, auth)
	s.route(get, "/v1/sandboxes/:id/ports/:port/wait", c.none, s.waitPort, auth)
	s.route(echo.RouteAny, "/v1/sandboxes/:id/ports/:port/*", c.proxy, s.proxyPort, keyIfSent)

	s.route(post, "/v1/run", c.jsonStream, s.run, auth)
	s.route(get, "/v1/pools", c.none, s.listPools, admin)
	s.route(get, "/v1/routes", c.none, s.listRoutes, admin)
	s.route(get, "/v1/apps", c.none, s.listApps, auth)
	s.route(put, "/v1/apps/:name", c.json, s.deployApp, auth)
	s.route(get, "/v1/apps/:name", c.none, s.getApp, auth)
	s.route(del, "/v1/apps/:name", c.none, s.deleteApp, auth)
	s.route(get, "/v1/apps/:name/logs", c.none, s.appLogs, auth)
	s.route(echo.RouteAny, "/v1/apps/:name/invoke", c.app, s.invokeApp, auth)
	s.route(echo.RouteAny, "/v1/apps/:name/invoke/*", c.app, s.invokeApp, auth)
	s.route(get, "/v1/usage", c.none, s.usage, auth)

	s.route(get, "/v1/images", c.none, s.listImages, auth)
	s.route(post, "/v1/images", c.jsonStream, s.buildImage, admin)
	s.route(del, "/v1/images/*", c.none, s.removeImage, admin)

	s.route(post, "/v1/keys", c.json, s.createKey, admin)
	s.route(get, "/v1/keys", c.none, s.listKeys, admin)
	s.route(patch, "/v1/keys/:id", c.json, s.updateKey, admin)
	s.route(del, "/v1/keys/:id", c.none, s.revokeKey, admin)

	ui := echo.WrapHandler(web.Handler())
	s.route(get, "/", c.none, ui)
	s.route(get, "/docs", c.none, ui)
	s.route(get, "/static/*", c.none, ui)
	s.route(get, "/vendor/*", c.none, ui)

	// The other front doors (MCP, E2B's planes), in the same table; those
	// routed by a header are served before routing (headerMounts).
	for _, m := range s.deps.Mounts {
		method := m.Method
		if method == "" {
			method = echo.RouteAny
		}
		class := s.kindClass(m.Kind)
		if m.Body > 0 {
			class.Body = m.Body
		}
		flags := 0
		if m.Auth {
			flags = withKey | keyInContext
		}
		if m.Header != "" {
			s.headerMounts = append(s.headerMounts, headerMount{Mount: m,
				serve: s.guard(class, flags)(echo.WrapHandler(m.Handler))})
			s.class["HEADER "+m.Header+" "+m.Path] = class
			s.table = append(s.table, tableRow(method, m.Path, class, flags))
			s.table[len(s.table)-1].Header = m.Header
			continue
		}
		s.route(method, m.Path, class, echo.WrapHandler(m.Handler), flags)
	}

	// Preview hosts own all of their paths (front serves them before
	// routing: previewServe).
	if s.cfg.PreviewDomain != "" {
		row := tableRow("*", "", c.proxy, 0)
		row.Host = "{port}-{id}." + s.cfg.PreviewDomain
		s.table = append(s.table, row)
		s.class["HOST "+row.Host] = c.proxy
	}

	s.e.RouteNotFound("/*", s.notFound, s.guard(c.none, 0))
	s.class[echo.RouteNotFound+" /*"] = c.none
}

// route registers a route with its class and the flags of its guard (the
// route's one middleware: bounds, then authentication, then what the
// request holds).
func (s *Server) route(method, path string, class bounds.Class, h echo.HandlerFunc, flags ...int) {
	f := 0
	for _, x := range flags {
		f |= x
	}
	s.e.Add(method, path, h, s.guard(class, f))
	s.class[method+" "+path] = class
	s.table = append(s.table, tableRow(method, path, class, f))
}

// tableRow is a route's row in GET /v1/routes.
func tableRow(method, path string, class bounds.Class, flags int) api.Route {
	if method == echo.RouteAny {
		method = "*"
	}
	auth := "none"
	switch {
	case flags&adminKey != 0:
		auth = "admin"
	case flags&withKey != 0:
		auth = "key"
	case flags&keyIfSent != 0:
		auth = "key or port token"
	}
	return api.Route{Method: method, Path: path, Class: class.Name, BodyLimit: class.Body,
		WholeBody: class.Whole, Streams: class.Stream, Auth: auth}
}

// listRoutes handles GET /v1/routes: the route table, and each route's
// bounds.
func (s *Server) listRoutes(c *echo.Context) error {
	return c.JSON(http.StatusOK, api.RouteList{Routes: s.table})
}

// emptyBody is h for an action that takes no arguments: its body may be
// empty or {}, and anything else (malformed JSON, a field) is a 400 before
// h acts.
func emptyBody(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) error {
		if err := bind(c, &struct{}{}, true); err != nil {
			return err
		}
		return h(c)
	}
}

// headerMount is a mount that a header routes to.
type headerMount struct {
	bounds.Mount
	serve echo.HandlerFunc
}

// sandboxRoute says a route's :id is a sandbox's.
func sandboxRoute(path string) bool { return strings.HasPrefix(path, "/v1/sandboxes/:id") }

// openAPI serves the API's OpenAPI 3.1 document (package openapi; the tests
// hold it to this table both ways).
func openAPI(c *echo.Context) error {
	return c.Blob(http.StatusOK, "application/json", openapi.Document())
}
