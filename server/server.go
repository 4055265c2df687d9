package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v5"
	"github.com/labstack/echo/v5/middleware"

	"github.com/sandboxd/sandboxd/bounds"
	"github.com/sandboxd/sandboxd/fsapi"
	"github.com/sandboxd/sandboxd/images"
	"github.com/sandboxd/sandboxd/isolate"
	"github.com/sandboxd/sandboxd/orchestrator"
	"github.com/sandboxd/sandboxd/ports"
	"github.com/sandboxd/sandboxd/process"
	"github.com/sandboxd/sandboxd/shell"
	"github.com/sandboxd/sandboxd/snapshot"
	"github.com/sandboxd/sandboxd/supervisor"
)

// Pinger is the database, for /readyz.
type Pinger interface {
	PingContext(ctx context.Context) error
}

// Deps are the components the server fronts.
type Deps struct {
	Orchestrator *orchestrator.Orchestrator
	Files        *fsapi.Service
	Shell        *shell.Service
	Processes    *process.Service
	Ports        *ports.Service
	Keys         *supervisor.Keys
	Tickets      *supervisor.Tickets
	Images       *images.Builder
	Snapshots    *snapshot.Snapshots
	Isolate      *isolate.Service
	Ledger       *supervisor.Ledger
	DB           Pinger
	Log          *slog.Logger
	// Mounts are the other front doors' routes (MCP, E2B's planes), served
	// in the same route table, under the same bounds.
	Mounts []bounds.Mount
}

// Config tunes the server.
type Config struct {
	// BodyLimit bounds request bodies, in bytes.
	BodyLimit int64
	// AllowedOrigins may open WebSockets besides the server's own origin
	// (scheme://host[:port] each).
	AllowedOrigins []string
	// MaxFileBytes bounds an uploaded file or archive, in bytes.
	MaxFileBytes int64
	// Bounds are the budgets, caps and deadlines every front door shares
	// (bounds.Config; zero fields take its defaults).
	Bounds bounds.Config
	// PreviewDomain, when set, serves exposed ports at
	// {port}-{id}.{PreviewDomain} (the host form).
	PreviewDomain string
}

// Server is the HTTP API.
type Server struct {
	deps    Deps
	cfg     Config
	log     *slog.Logger
	e       *echo.Echo
	tickets *supervisor.Tickets
	bounds  *bounds.Bounds
	metrics *metrics
	// class is each route's class, by "METHOD path"; mounted marks the
	// routes of other front doors.
	class        map[string]bounds.Class
	mounted      map[string]bool
	headerMounts []headerMount

	// life ends at shutdown, ending the WebSockets that http.Server.Shutdown
	// does not track.
	life     context.Context
	shutdown context.CancelFunc
}

// New builds the Echo app and its routes.
func New(cfg Config, deps Deps) *Server {
	if cfg.BodyLimit == 0 {
		cfg.BodyLimit = 8 << 20
	}
	if cfg.MaxFileBytes == 0 {
		cfg.MaxFileBytes = 4 << 30
	}
	s := &Server{deps: deps, cfg: cfg, log: deps.Log.With("component", "server"), tickets: deps.Tickets,
		bounds: bounds.New(cfg.Bounds), metrics: newMetrics(deps),
		class: map[string]bounds.Class{}, mounted: map[string]bool{}}
	if s.tickets == nil {
		s.tickets = supervisor.NewTickets()
	}
	s.life, s.shutdown = context.WithCancel(context.Background())
	e := echo.NewWithConfig(echo.Config{Logger: s.log, HTTPErrorHandler: s.handleError})
	cfg.PreviewDomain = strings.ToLower(strings.Trim(cfg.PreviewDomain, "."))
	s.cfg.PreviewDomain = cfg.PreviewDomain
	// Before routing, for every request: recovery, an ID, the count (under
	// labels from the route table only), the head's limits, the log line,
	// and the preview hosts, which own all of their paths.
	e.Pre(middleware.Recover())
	e.Pre(middleware.RequestIDWithConfig(middleware.RequestIDConfig{
		RequestIDHandler: func(c *echo.Context, id string) { c.Set(ctxRequestID, id) },
	}))
	e.Pre(s.metrics.observe)
	e.Pre(s.limitHead)
	e.Pre(middleware.RequestLoggerWithConfig(middleware.RequestLoggerConfig{
		LogStatus: true, LogMethod: true, LogURIPath: true, LogLatency: true, LogRequestID: true,
		HandleError: true,
		LogValuesFunc: func(c *echo.Context, v middleware.RequestLoggerValues) error {
			level := slog.LevelDebug
			if v.Status >= 500 {
				level = slog.LevelError
			} else if v.Status >= 400 {
				level = slog.LevelInfo
			}
			s.log.Log(c.Request().Context(), level, "request",
				"method", v.Method, "path", v.URIPath, "status", v.Status,
				"latency_ms", float64(v.Latency.Microseconds())/1000, "request_id", v.RequestID)
			return nil
		},
	}))
	if cfg.PreviewDomain != "" {
		e.Pre(s.preview)
	}
	e.Pre(s.byHeader)
	s.e = e
	s.routes()
	return s
}

// MetricsHandler serves the Prometheus figures without authentication, for
// a listener of their own (GET /metrics on the API needs an admin key).
func (s *Server) MetricsHandler() http.Handler { return s.metrics.handler() }

// Handler is the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.e }

// HTTPServer wraps the handler in an http.Server with sane timeouts for a server
// whose routes stream (no write timeout).
func (s *Server) HTTPServer(addr string) *http.Server {
	hs := &http.Server{
		Addr:              addr,
		Handler:           s.e,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    maxHeaderBytes,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	hs.RegisterOnShutdown(s.shutdown)
	return hs
}

// Close ends the WebSockets still open (HTTPServer's Shutdown does it too).
func (s *Server) Close() { s.shutdown() }
