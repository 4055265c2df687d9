package server

import (
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/ports"
	"github.com/bothy/bothy/supervisor"
)

// portParam reads the :port of the route.
func portParam(c *echo.Context) (int, error) {
	port, err := strconv.Atoi(c.Param("port"))
	if err != nil {
		return 0, badRequest("port: want 1 to 65535, got " + strconv.Quote(c.Param("port")))
	}
	return port, ports.CheckPort(port)
}

func (s *Server) exposePort(c *echo.Context) error {
	var req api.ExposePortRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	p, err := s.deps.Ports.Expose(c.Request().Context(), caller(c).ID, c.Param("id"), req.Port, req.Public)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, s.toPort(c, p))
}

func (s *Server) listPorts(c *echo.Context) error {
	list, err := s.deps.Ports.List(c.Request().Context(), caller(c).ID, c.Param("id"))
	if err != nil {
		return err
	}
	out := api.PortList{Ports: make([]api.ExposedPort, 0, len(list))}
	for _, p := range list {
		out.Ports = append(out.Ports, s.toPort(c, p))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) unexposePort(c *echo.Context) error {
	port, err := portParam(c)
	if err != nil {
		return err
	}
	if err := s.deps.Ports.Unexpose(c.Request().Context(), caller(c).ID, c.Param("id"), port); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// maxPortWait bounds ?timeout_ms= of a wait for a port.
const maxPortWait = 10 * time.Minute

// waitPort answers 204 once something listens on the port, or 502 when
// ?timeout_ms= (default 30 s) passes first.
func (s *Server) waitPort(c *echo.Context) error {
	port, err := portParam(c)
	if err != nil {
		return err
	}
	ms, err := intParam(c.QueryParam("timeout_ms"), 0, int(maxPortWait.Milliseconds()))
	if err != nil {
		return badRequest("timeout_ms: " + err.Error())
	}
	timeout := time.Duration(ms) * time.Millisecond
	if c.QueryParam("timeout_ms") == "" {
		timeout = 30 * time.Second
	}
	if err := s.deps.Ports.Wait(c.Request().Context(), caller(c).ID, c.Param("id"), port, timeout); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// proxyPort serves any request under /v1/sandboxes/{id}/ports/{port}/ from
// that port of the sandbox (the path form): with the owner's API key, or
// without a key with the port's token (X-Bothy-Port-Token, or ?bothy_token=),
// or none when the port is public. Without a key the request counts against
// the port's cap of anonymous requests, as on its preview host.
func (s *Server) proxyPort(c *echo.Context) error {
	port, err := portParam(c)
	if err != nil {
		return err
	}
	r, id, path := c.Request(), c.Param("id"), "/"+c.Param("*")
	if key, ok := c.Get(ctxKey).(supervisor.Key); ok {
		return s.deps.Ports.Proxy(c.Response(), r, key.ID, id, port, path)
	}
	owner, p, err := s.deps.Ports.Exposure(r.Context(), id, port)
	if err != nil {
		return err
	}
	if err := bounds.From(r.Context()).Anonymous(id, port); err != nil {
		return err
	}
	given := takeQueryToken(r)
	if given == "" {
		given = r.Header.Get(previewTokenHeader)
	}
	if !p.Public && !sameToken(given, p.Token) {
		return newError(http.StatusUnauthorized, api.CodeUnauthenticated,
			"port "+strconv.Itoa(port)+" of sandbox "+id+" needs the API key (Authorization: Bearer KEY) or its token ("+previewTokenHeader+" or ?"+previewTokenParam+"=)")
	}
	r.Header.Del(previewTokenHeader)
	return s.deps.Ports.Proxy(c.Response(), r, owner, id, port, path)
}

func (s *Server) toPort(c *echo.Context, p ports.Port) api.ExposedPort {
	r := c.Request()
	scheme := "http"
	if isHTTPS(r) {
		scheme = "https"
	}
	id := c.Param("id")
	out := api.ExposedPort{Port: p.Port, Public: p.Public, Token: p.Token, CreatedAt: p.CreatedAt,
		PathURL: scheme + "://" + r.Host + "/v1/sandboxes/" + id + "/ports/" + strconv.Itoa(p.Port) + "/"}
	out.URL = out.PathURL
	if s.cfg.PreviewDomain != "" {
		host := strconv.Itoa(p.Port) + "-" + id + "." + s.cfg.PreviewDomain
		if _, listen, err := net.SplitHostPort(r.Host); err == nil {
			host = net.JoinHostPort(host, listen)
		}
		out.URL = scheme + "://" + host + "/"
	}
	return out
}

// isHTTPS says r came over TLS, to bothy or to the front before it.
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}
