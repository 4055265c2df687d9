// Package kep is the bothy-agent's implementation of Kubernetes SIG Apps'
// standard in-sandbox runtime interface (agent-sandbox v1.0.1, KEP-539.2,
// "Core" level): the process service over gRPC (Start, Execute,
// WriteStdin, SendSignal, ResizeTTY; processv1, generated from
// proto/process.proto) and the filesystem, health and metadata service over
// REST (/v1/files/{path}, /v1/health, /v1/metadata), each on its own port
// of the sandbox's loopback. Files and working directories are confined to
// the runtime's root. The agent serves it only where asked: in sandboxes
// made with "kep", or run as "bothy-agent kep" as an agent-sandbox runtime.
package kep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bothy/bothy/agent/kep/processv1/processv1connect"
)

// The spec's ports (KEP-539.2: REST on 8080, gRPC on 9090, on localhost).
const (
	RESTAddr = "127.0.0.1:8080"
	GRPCAddr = "127.0.0.1:9090"
	// DefaultRoot is the sandbox root of the spec's examples.
	DefaultRoot = "/workspace"
)

// Config is what the runtime serves, and where.
type Config struct {
	// Root confines files and working directories; it is made when missing.
	Root string
	// Metadata is what /v1/metadata tells (never credentials: untrusted
	// code in the sandbox reads it too).
	Metadata map[string]string
	// REST and GRPC are the listen addresses (RESTAddr and GRPCAddr when
	// empty).
	REST, GRPC string
}

// Spawner starts the runtime's processes; in the agent, its server does,
// so that its reaper (it is PID 1) waits for them (server.Server.Spawn).
type Spawner interface {
	Spawn(argv []string, env map[string]string, cwd string, files []*os.File, tty bool) (pid int, exit <-chan syscall.WaitStatus, err error)
}

// Runtime serves the interface.
type Runtime struct {
	cfg     Config
	root    *os.Root
	sp      Spawner
	log     *slog.Logger
	started time.Time
	closing atomic.Bool

	mu    sync.Mutex
	procs map[int32]*proc
}

// New makes the runtime of cfg, with processes started by sp.
func New(cfg Config, sp Spawner, log *slog.Logger) (*Runtime, error) {
	if cfg.Root == "" {
		cfg.Root = DefaultRoot
	}
	if cfg.REST == "" {
		cfg.REST = RESTAddr
	}
	if cfg.GRPC == "" {
		cfg.GRPC = GRPCAddr
	}
	if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
		return nil, fmt.Errorf("sandbox root: %w", err)
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("sandbox root: %w", err)
	}
	return &Runtime{cfg: cfg, root: root, sp: sp, log: log, started: time.Now(), procs: map[int32]*proc{}}, nil
}

// RESTHandler serves the filesystem, health and metadata service.
func (s *Runtime) RESTHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/files/", s.files)
	mux.HandleFunc("/v1/files", s.files)
	mux.HandleFunc("/v1/health", s.health)
	mux.HandleFunc("/v1/metadata", s.metadata)
	return mux
}

// ProcessHandler serves the process service (gRPC, and Connect's own
// protocols besides), under its path.
func (s *Runtime) ProcessHandler() (string, http.Handler) {
	return processv1connect.NewProcessServiceHandler(&processService{s})
}

// Serve listens on both addresses and serves until ctx is done; then the
// processes it started are killed.
func (s *Runtime) Serve(ctx context.Context) error {
	restLn, err := net.Listen("tcp", s.cfg.REST)
	if err != nil {
		return err
	}
	grpcLn, err := net.Listen("tcp", s.cfg.GRPC)
	if err != nil {
		restLn.Close()
		return err
	}
	grpcMux := http.NewServeMux()
	grpcMux.Handle(s.ProcessHandler())
	// gRPC only, as HTTP/2 without TLS (prior knowledge), which no browser
	// speaks: a page in the sandbox's browser cannot start processes.
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	servers := []*http.Server{
		{Handler: loopbackOnly(s.RESTHandler()), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute},
		{Handler: loopbackOnly(grpcOnly(grpcMux)), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, Protocols: &protocols},
	}
	errs := make(chan error, 2)
	for i, ln := range []net.Listener{restLn, grpcLn} {
		go func() { errs <- servers[i].Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	s.closing.Store(true)
	for _, srv := range servers {
		_ = srv.Close()
	}
	s.killAll()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// loopbackOnly refuses a request whose Host is not a loopback name (as
// bothy's port proxy sends, "localhost:PORT"): a page whose DNS name was
// rebound to 127.0.0.1 names its own host, and is refused.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hn, _, err := net.SplitHostPort(host); err == nil {
			host = hn
		}
		switch strings.TrimSuffix(strings.TrimPrefix(host, "["), "]") {
		case "localhost", "127.0.0.1", "::1":
			h.ServeHTTP(w, r)
		default:
			writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "the runtime answers loopback names only")
		}
	})
}

// grpcOnly refuses what is not gRPC (Connect's own protocols included).
func grpcOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			writeError(w, http.StatusUnsupportedMediaType, "INVALID_ARGUMENT", "the process service speaks gRPC only")
			return
		}
		h.ServeHTTP(w, r)
	})
}
