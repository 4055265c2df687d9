// Command bothyd serves sandboxes for AI agents on a local Docker engine.
// See README.md; `bothyd -h` lists the flags.
package main

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bothy/bothy/agent/wire"

	"golang.org/x/sys/unix"

	"github.com/bothy/bothy/compat/e2b"
	"github.com/bothy/bothy/db"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/isolate"
	"github.com/bothy/bothy/mcp"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/ports"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/runtime/docker"
	"github.com/bothy/bothy/server"
	"github.com/bothy/bothy/shell"
	"github.com/bothy/bothy/snapshot"
	"github.com/bothy/bothy/supervisor"
	"github.com/bothy/bothy/web"
)

func main() {
	cfg, err := loadConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bothyd:", err)
		os.Exit(2)
	}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	if cfg.LogJSON {
		h = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	log := slog.New(h)
	if err := run(cfg, log); err != nil {
		log.Error("bothy stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	if cfg.MaxProcs > 0 {
		goruntime.GOMAXPROCS(cfg.MaxProcs)
	}
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	if cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	data, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o711); err != nil {
		return err
	}
	instance, err := instanceID(data)
	if err != nil {
		return err
	}
	sq, err := db.Open(filepath.Join(data, "bothy.db"))
	if err != nil {
		return err
	}
	defer sq.Close()
	_ = os.Chmod(filepath.Join(data, "bothy.db"), 0o600)

	eng, err := docker.New(ctx, log)
	if err != nil {
		return fmt.Errorf("%w (is the engine running? scripts/engine.sh starts one)", err)
	}
	defer eng.Close()
	info, err := eng.Info(ctx)
	if err != nil {
		return err
	}
	// The kernel counters that every container shares are raised past
	// what this host's memory could hold; each container gets its own
	// shares of them (runtime/docker/shares.go, docs/security.md).
	if changed, err := docker.RaiseHostLimits(); err != nil {
		return fmt.Errorf("raise the host's shared kernel limits (bothy runs as root): %w", err)
	} else if len(changed) > 0 {
		log.Info("raised the host's shared kernel limits", "changed", strings.Join(changed, " "))
	}
	log.Info("docker engine", "version", info.Version, "api", info.APIVersion, "userns_remap", info.UsernsRemap, "cgroup_v2", info.CgroupV2)
	if info.UsernsRemap {
		if bad := unreachableAncestor(data); bad != "" {
			return fmt.Errorf("the engine remaps users, so containers must be able to traverse %s, but %s is not executable by others (chmod o+x it, or pick another -data)", data, bad)
		}
	}

	builder := images.New(eng, log, cfg.DebianMirror, filepath.Join(data, "build"))
	var publish, unpublish func(context.Context, string) error
	if cfg.Registry != "" {
		if err := eng.SetRegistryAuth(cfg.Registry, os.Getenv("BOTHY_REGISTRY_USER"), os.Getenv("BOTHY_REGISTRY_PASSWORD")); err != nil {
			return err
		}
		access := images.RegistryAccess{User: os.Getenv("BOTHY_REGISTRY_USER"), Password: os.Getenv("BOTHY_REGISTRY_PASSWORD")}
		if cfg.RegistryCA != "" {
			if access.CA, err = readCA(cfg.RegistryCA); err != nil {
				return err
			}
		}
		builder.UseRegistry(cfg.Registry, access)
		publish = func(ctx context.Context, ref string) error { return builder.Publish(ctx, ref, nil) }
		unpublish = builder.Unpublish
	}
	defer builder.Close()
	if cfg.BuildImage != "" {
		// A build may run beside a server on the same data directory: its
		// scratch directories are its own.
		return buildImage(ctx, builder, cfg.BuildImage)
	}
	lock, err := lockData(data)
	if err != nil {
		return err
	}
	defer lock.Close()
	builder.Warm(ctx, cfg.DefaultImage, images.Busybox)

	keys, err := supervisor.NewKeys(ctx, sq)
	if err != nil {
		return err
	}
	keys.SetDefaultQuota(cfg.Quota)
	secret, err := keys.Bootstrap(ctx, cfg.AdminKey)
	if err != nil {
		return err
	}
	if secret != "" {
		fmt.Fprintf(os.Stderr, "\n  bothy admin API key (shown once, keep it):\n\n    export BOTHY_KEY=%s\n\n", secret)
	}

	snaps, err := snapshot.New(ctx, snapshot.Config{
		Instance: instance, Scratch: filepath.Join(data, "tmp"),
		OrphanGrace: cfg.OrphanGrace, ReconcileEvery: cfg.ReconcileEvery, Quotas: snapshotQuota(keys),
		Publish: publish, Unpublish: unpublish,
	}, sq, eng, log)
	if err != nil {
		return err
	}
	rt, sandboxImages, err := sandboxRuntime(ctx, cfg, eng, builder, log)
	if err != nil {
		return err
	}
	orch, err := orchestrator.New(ctx, orchestrator.Config{
		Instance: instance, DataDir: data, AgentBinary: cfg.AgentBinary,
		Network: cfg.Network, Bridge: cfg.Bridge, AllowedRanges: cfg.AllowedRanges, DefaultImage: cfg.DefaultImage,
		OrphanGrace: cfg.OrphanGrace, ReconcileEvery: cfg.ReconcileEvery,
		Limits: diskLimits(cfg), Quotas: sandboxQuota(keys), Pools: cfg.SandboxPools, Checkpoints: snaps,
		Transport:  cfg.AgentTransport,
		Checkpoint: cfg.Checkpoint, NetworkOnly: cfg.Runtime == "kubernetes",
	}, rt, sandboxImages, sq, log)
	if err != nil {
		return err
	}
	defer orch.Close()
	if err := orch.Run(ctx); err != nil {
		return err
	}
	snaps.Run(ctx)
	defer snaps.Close()
	ledger, err := supervisor.NewLedger(ctx, sq, log)
	if err != nil {
		return err
	}
	defer ledger.Close()
	limits := supervisor.NewLimits(supervisor.LimitsConfig{
		PerKey:      supervisor.Rate{PerSec: cfg.RatePerKey, Burst: cfg.BurstPerKey},
		PerApp:      supervisor.Rate{PerSec: cfg.RatePerApp, Burst: cfg.BurstPerApp},
		Concurrency: cfg.Concurrency,
	})
	iso, err := isolate.New(ctx, isolate.Config{
		Instance: instance, DataDir: data, AgentHost: orch.AgentHost(),
		Images: map[string]string{
			wire.RuntimePython: images.RunnerPython, wire.RuntimeNode: images.RunnerNode, wire.RuntimeBash: images.RunnerBash,
		},
		MinIdle: map[string]int{
			wire.RuntimePython: cfg.PoolMinIdle, wire.RuntimeNode: min(cfg.PoolMinIdle, 1), wire.RuntimeBash: min(cfg.PoolMinIdle, 1),
		},
		MaxTotal: cfg.PoolMaxTotal, MaxPerKey: cfg.RunnersPerKey, AppIdle: cfg.AppIdle,
		Limits: limits, Ledger: ledger,
	}, eng, builder, sq, log)
	if err != nil {
		return err
	}
	iso.Start()
	defer iso.Close()
	portSvc, err := ports.New(ctx, orch, sq, log)
	if err != nil {
		return err
	}
	files := fsapi.New(orch, snaps, fsapi.Limits{MaxFileBytes: cfg.MaxFileBytes, MaxExtractBytes: cfg.MaxExtract})
	procs := process.New(orch)
	terms := shell.New(orch, log)
	// MCP at /mcp and E2B's two planes, beside the REST API in its one
	// route table, with the same keys and bounds (docs/mcp.md, docs/e2b.md).
	mounts := mcp.Mounts(mcp.Deps{Orchestrator: orch, Files: files, Processes: procs, Ports: portSvc, Snapshots: snaps,
		Isolate: iso, Keys: keys, Version: "bothy"})
	if cfg.E2B {
		compat, err := e2b.New(ctx, e2b.Deps{Orchestrator: orch, Files: files, Processes: procs, Shell: terms, Keys: keys, DB: sq, Log: log,
			DefaultImage: cfg.DefaultImage})
		if err != nil {
			return err
		}
		mounts = append(mounts, compat.Mounts()...)
	}
	srv := server.New(server.Config{
		BodyLimit: cfg.BodyLimit, AllowedOrigins: cfg.AllowedOrigins,
		MaxFileBytes: cfg.MaxFileBytes, Bounds: cfg.Bounds, PreviewDomain: cfg.PreviewDomain,
	}, server.Deps{
		Orchestrator: orch, Keys: keys, Tickets: supervisor.NewTickets(), Images: builder, Snapshots: snaps,
		Files: files, Shell: terms, Processes: procs, Ports: portSvc, Isolate: iso, Ledger: ledger, DB: sq, Log: log,
		Mounts: mounts,
	})
	defer srv.Close()
	hs := srv.HTTPServer(cfg.Listen)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if !web.Built() {
		log.Warn("the web UI was built without its npm assets (xterm.js); run make build")
	}
	log.Info("bothy serving", "url", "http://"+ln.Addr().String(), "data", data, "instance", instance)
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(ln) }()
	if cfg.MetricsListen != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		// Go's profiles, for an operator who asks where memory or time goes.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
		ms := &http.Server{Addr: cfg.MetricsListen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		mln, err := net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			return err
		}
		log.Info("metrics serving", "url", "http://"+mln.Addr().String()+"/metrics")
		go func() { errc <- ms.Serve(mln) }()
		defer ms.Close()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("http shutdown", "err", err)
	}
	return nil
}

// instanceID reads (or makes, on first start) the ID that labels everything this
// data directory's bothy creates.
// lockData takes the data directory for this process, for as long as it
// runs (the kernel lets go of the lock when it exits). Two bothyds on one
// data directory would take each other's sandboxes for orphans, and one
// still shutting down would unlink the agent sockets a newer one listens
// on. The lock lasts until the file is closed (or the process ends).
func lockData(data string) (*os.File, error) {
	p := filepath.Join(data, "bothyd.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another bothyd (pid %s) uses the data directory %s: stop it, and let it finish, or give this one another -data",
				strings.TrimSpace(string(holder)), data)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	err = f.Truncate(0)
	if err == nil {
		_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func instanceID(data string) (string, error) {
	p := filepath.Join(data, "instance")
	if b, err := os.ReadFile(p); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", err
	}
	return id, nil
}

// unreachableAncestor returns the first directory above dir (exclusive) that
// other users cannot traverse, or "".
func unreachableAncestor(dir string) string {
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil && fi.Mode().Perm()&0o001 == 0 {
			return d
		}
		if d == "/" || d == "." {
			return ""
		}
	}
}

// diskLimits are the host's default limits with the configured disk sizes.
func diskLimits(cfg config) orchestrator.Limits {
	l := orchestrator.DefaultLimits()
	l.DefaultDiskMB, l.MaxDiskMB = cfg.DiskMB, cfg.MaxDiskMB
	return l
}

// sandboxQuota tells the orchestrator each key's sandbox quota.
func sandboxQuota(keys *supervisor.Keys) orchestrator.QuotaFunc {
	return func(ctx context.Context, owner string) (orchestrator.Quota, error) {
		k, err := keys.Get(ctx, owner)
		if err != nil {
			return orchestrator.Quota{}, err
		}
		q := k.Quota
		return orchestrator.Quota{Sandboxes: q.Sandboxes, Running: q.Running, MemoryMB: q.MemoryMB, CPUs: q.CPUs, DiskMB: q.DiskMB}, nil
	}
}

// snapshotQuota tells the snapshot store each key's snapshot quota.
func snapshotQuota(keys *supervisor.Keys) snapshot.QuotaFunc {
	return func(ctx context.Context, owner string) (snapshot.Quota, error) {
		k, err := keys.Get(ctx, owner)
		if err != nil {
			return snapshot.Quota{}, err
		}
		return snapshot.Quota{Snapshots: k.Quota.Snapshots, Bytes: k.Quota.SnapshotBytes}, nil
	}
}

// buildImage is --build-image: make a built-in image if it is missing (or its
// recipe changed), printing the build's progress, and stop. `make image`
// builds the base of bothy's own image this way.
func buildImage(ctx context.Context, builder *images.Builder, ref string) error {
	if !strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
		ref += ":latest"
	}
	if !slices.Contains(images.Recipes(), ref) {
		return fmt.Errorf("--build-image: %q is not a built-in image (%s)", ref, strings.Join(images.Recipes(), ", "))
	}
	img, err := builder.Ensure(ctx, ref, func(line string) { fmt.Fprintln(os.Stderr, line) })
	if err != nil {
		return err
	}
	fmt.Println(img.ID)
	return nil
}

// readCA reads a PEM file of one or more CA certificates.
func readCA(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("-registry-ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("-registry-ca %s: no PEM certificate in it", file)
	}
	return pool, nil
}
