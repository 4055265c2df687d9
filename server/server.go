package server

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/isolate"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/ports"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/shell"
	"github.com/bothy/bothy/snapshot"
	"github.com/bothy/bothy/supervisor"
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
	// class is each route's class, by "METHOD path"; table lists every
	// route with its bounds (GET /v1/routes).
	class        map[string]bounds.Class
	table        []api.Route
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
		class: map[string]bounds.Class{}}
	if s.tickets == nil {
		s.tickets = supervisor.NewTickets()
	}
	s.life, s.shutdown = context.WithCancel(context.Background())
	e := echo.NewWithConfig(echo.Config{Logger: s.log, HTTPErrorHandler: s.handleError})
	cfg.PreviewDomain = strings.ToLower(strings.Trim(cfg.PreviewDomain, "."))
	s.cfg.PreviewDomain = cfg.PreviewDomain
	// One middleware before routing, for every request (front.go).
	e.Pre(s.front)
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
