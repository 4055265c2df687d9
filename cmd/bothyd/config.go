package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/supervisor"
)

// config is everything bothy can be told, from flags, then environment
// variables, then defaults.
type config struct {
	Listen         string
	DataDir        string
	AgentBinary    string
	AdminKey       string
	DefaultImage   string
	PreviewDomain  string
	E2B            bool
	MetricsListen  string
	DebianMirror   string
	Network        string
	Bridge         string
	AgentTransport string
	Checkpoint     string
	Registry       string
	RegistryCA     string
	Runtime        string
	Kubeconfig     string
	KubeNamespace  string
	KubeClass      string
	KubeUserNS     bool
	OrphanGrace    time.Duration
	ReconcileEvery time.Duration
	BodyLimit      int64
	AllowedOrigins []string
	AllowedRanges  []string
	Bounds         bounds.Config
	DiskMB         int64
	MaxDiskMB      int64
	Quota          supervisor.Quota
	MaxFileBytes   int64
	MaxExtract     int64
	GCPercent      int
	MemoryLimit    int64
	MaxProcs       int
	RatePerKey     float64
	BurstPerKey    int
	RatePerApp     float64
	BurstPerApp    int
	Concurrency    int
	PoolMinIdle    int
	SandboxPools   []orchestrator.PoolClass
	PoolMaxTotal   int
	RunnersPerKey  int
	AppIdle        time.Duration
	LogLevel       slog.Level
	LogJSON        bool
	BuildImage     string
}

func loadConfig(args []string) (config, error) {
	fs := flag.NewFlagSet("bothyd", flag.ContinueOnError)
	env := func(name, def string) string {
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		return def
	}
	var c config
	var level string
	fs.StringVar(&c.Listen, "listen", env("BOTHY_LISTEN", "127.0.0.1:7070"), "address to serve the API on (BOTHY_LISTEN)")
	fs.StringVar(&c.DataDir, "data", env("BOTHY_DATA", "./data"), "data directory: database, sockets, build scratch (BOTHY_DATA)")
	fs.StringVar(&c.AgentBinary, "agent", env("BOTHY_AGENT", ""), "path of the static bothy-agent binary (default: next to bothyd) (BOTHY_AGENT)")
	fs.StringVar(&c.DefaultImage, "default-image", env("BOTHY_DEFAULT_IMAGE", images.Base), "image of a sandbox that names none")
	fs.StringVar(&c.DebianMirror, "debian-mirror", env("BOTHY_DEBIAN_MIRROR", images.DefaultMirror), "Debian mirror the base image is debootstrapped from")
	fs.StringVar(&c.Network, "network", env("BOTHY_NETWORK", "bothy"), "Docker network sandboxes join")
	fs.StringVar(&c.Bridge, "bridge", env("BOTHY_BRIDGE", "bothy0"), "host interface name of that network's bridge")
	grace, err := time.ParseDuration(env("BOTHY_ORPHAN_GRACE", "2m"))
	if err != nil {
		return config{}, fmt.Errorf("BOTHY_ORPHAN_GRACE: %w", err)
	}
	every, err := time.ParseDuration(env("BOTHY_RECONCILE_EVERY", "30s"))
	if err != nil {
		return config{}, fmt.Errorf("BOTHY_RECONCILE_EVERY: %w", err)
	}
	fs.DurationVar(&c.OrphanGrace, "orphan-grace", grace, "age after which a labelled container or image that nothing of bothy's owns is removed (BOTHY_ORPHAN_GRACE)")
	fs.DurationVar(&c.ReconcileEvery, "reconcile-every", every, "how often to reconcile with the engine (BOTHY_RECONCILE_EVERY)")
	fs.Int64Var(&c.BodyLimit, "body-limit", 8<<20, "largest request body, in bytes")
	fs.Float64Var(&c.RatePerKey, "rate-per-key", 1000, "runs and app invokes per second one API key may make (0: no limit)")
	fs.IntVar(&c.BurstPerKey, "burst-per-key", 1000, "burst of -rate-per-key")
	fs.Float64Var(&c.RatePerApp, "rate-per-app", 500, "invokes per second of one app unless the app sets its own rate (0: no limit)")
	fs.IntVar(&c.BurstPerApp, "burst-per-app", 500, "burst of -rate-per-app")
	fs.IntVar(&c.Concurrency, "concurrency-per-key", 16, "runs and invokes one API key may have in flight (0: no limit)")
	poolMin, err := strconv.Atoi(env("BOTHY_POOL_MIN_IDLE", "2"))
	if err != nil {
		return config{}, fmt.Errorf("BOTHY_POOL_MIN_IDLE: %w", err)
	}
	fs.IntVar(&c.PoolMinIdle, "pool-min-idle", poolMin, "warm Python runners kept idle; node and bash keep one (0 keeps none warm) (BOTHY_POOL_MIN_IDLE)")
	sandboxPool := fs.String("sandbox-pool", env("BOTHY_SANDBOX_POOL", "default:2"), "warm sandbox pools, IMAGE:N[,IMAGE:N]: N sandboxes of IMAGE (a name without / is bothy/NAME; default is -default-image) with the default limits kept started, so that a create of that kind takes one (0 or empty: none) (BOTHY_SANDBOX_POOL)")
	fs.IntVar(&c.PoolMaxTotal, "pool-max", 32, "most runner containers of all pools together, idle, leased and starting")
	fs.IntVar(&c.RunnersPerKey, "runners-per-key", 0, "most runners one key holds, running or leased to it (default: a quarter of -pool-max)")
	fs.DurationVar(&c.AppIdle, "app-idle", time.Minute, "an app's runner idle this long is evicted (its data stays)")
	ranges := fs.String("allow-private", env("BOTHY_ALLOW_PRIVATE", ""), "comma-separated CIDR ranges sandboxes may reach although they are private, link-local or otherwise non-public (blocked by default)")
	fs.Int64Var(&c.DiskMB, "sandbox-disk-mb", 10<<10, "disk of a sandbox that asks for none, in MiB, where the engine enforces one (see /readyz disk_limits)")
	fs.Int64Var(&c.MaxDiskMB, "max-disk-mb", 100<<10, "largest disk_mb a sandbox may ask for")
	fs.Int64Var(&c.Quota.Sandboxes, "quota-sandboxes", 100, "sandboxes one key may have, in any state (0: no bound; an admin sets a key's own with PATCH /v1/keys/{id})")
	fs.Int64Var(&c.Quota.Running, "quota-running", 20, "sandboxes one key may have running or paused")
	fs.Int64Var(&c.Quota.MemoryMB, "quota-memory-mb", 32<<10, "memory_mb of one key's running and paused sandboxes, together")
	fs.Float64Var(&c.Quota.CPUs, "quota-cpus", 32, "cpus of one key's running and paused sandboxes, together")
	fs.Int64Var(&c.Quota.DiskMB, "quota-disk-mb", 500<<10, "disk_mb of one key's sandboxes, together")
	fs.Int64Var(&c.Quota.Snapshots, "quota-snapshots", 200, "snapshots one key may keep")
	fs.Int64Var(&c.Quota.SnapshotBytes, "quota-snapshot-bytes", 200<<30, "bytes one key's snapshots may add to their base images, together")
	fs.Int64Var(&c.Bounds.OutputBytes, "output-budget", bounds.DefaultOutputBytes, "bytes of command, run and tool output held in memory at once, over all requests answered as one JSON document, REST, MCP and E2B alike (a key holds at most half; past it requests wait)")
	fs.Int64Var(&c.Bounds.BodyBytes, "body-budget", bounds.DefaultBodyBytes, "bytes of request bodies read whole (JSON, app requests) held at once, counted at 4 per byte (a key holds at most a quarter; past it requests wait)")
	fs.IntVar(&c.Bounds.PerKey, "requests-per-key", bounds.DefaultPerKey, "requests one key may have in flight at once, streams and WebSockets included, on every front door (past it: 429)")
	fs.IntVar(&c.Bounds.PerSandbox, "requests-per-sandbox", bounds.DefaultPerSandbox, "requests to one sandbox in flight at once, whoever sends them (past it: 429)")
	fs.IntVar(&c.Bounds.PerPort, "requests-per-port", bounds.DefaultPerPort, "requests in flight at once to one exposed port without a key (preview hosts; past it: 429)")
	fs.DurationVar(&c.Bounds.WriteIdle, "write-idle", bounds.DefaultWriteIdle, "a client that takes none of an answer for this long is cut")
	fs.DurationVar(&c.Bounds.ReadIdle, "read-idle", bounds.DefaultReadIdle, "a client that sends none of a request body for this long is cut")
	origins := fs.String("allowed-origins", env("BOTHY_ALLOWED_ORIGINS", ""), "comma-separated origins (scheme://host:port) that may open WebSockets besides bothy's own")
	fs.Int64Var(&c.MaxFileBytes, "max-file-bytes", 4<<30, "largest file or archive upload, in bytes")
	fs.Int64Var(&c.MaxExtract, "max-extract-bytes", 8<<30, "most bytes one uploaded archive may expand to")
	fs.IntVar(&c.GCPercent, "gc-percent", 400, "Go GC target percentage (GOGC, when set, wins); transfers churn buffers over a small heap")
	fs.IntVar(&c.MaxProcs, "gomaxprocs", max(8, 4*goruntime.NumCPU()), "Go processors (GOMAXPROCS, when set, wins): more than the cores, so that the OS time-slices bulk copies and a short request is not queued behind them (on 2 cores under a saturating load: /healthz p99 17 ms against 108 ms at 2)")
	fs.Int64Var(&c.MemoryLimit, "memory-limit", 768<<20, "soft limit of bothy's own heap, in bytes (GOMEMLIMIT, when set, wins): past it the GC works harder instead of letting -gc-percent grow the heap")
	fs.StringVar(&c.MetricsListen, "metrics-listen", env("BOTHY_METRICS_LISTEN", ""), "also serve Prometheus /metrics and Go's profiles (/debug/pprof/), without authentication, on this address (GET /metrics on -listen needs an admin key) (BOTHY_METRICS_LISTEN)")
	fs.BoolVar(&c.E2B, "e2b", env("BOTHY_E2B", "true") == "true", "serve E2B's control plane and envd's data plane on the same listener, for E2B's SDKs (docs/e2b.md) (BOTHY_E2B)")
	fs.StringVar(&c.Checkpoint, "checkpoint", env("BOTHY_CHECKPOINT", orchestrator.CheckpointCommit), "how a running sandbox's checkpoint is taken: 'commit' (the engine commits its container, paused) or 'agent' (its agent streams what changed since the container was made as a layer, while it runs; needs no engine commit); a stopped or paused sandbox is always committed (BOTHY_CHECKPOINT)")
	fs.StringVar(&c.AgentTransport, "agent-transport", env("BOTHY_AGENT_TRANSPORT", orchestrator.TransportUnix), "how bothy reaches the agent in new sandboxes: 'unix' (the agent dials a socket bind-mounted into its container) or 'tcp' (bothy dials the agent's port on the sandbox's network, both ends proving who they are with mutual TLS from a CA kept in the data directory; docs/security.md); a sandbox keeps the transport it was made with, and one without a network uses the socket (BOTHY_AGENT_TRANSPORT)")
	fs.StringVar(&c.Registry, "registry", env("BOTHY_REGISTRY", ""), "HOST[:PORT] of a registry where bothy pushes the images it makes (base, runners, snapshots), pulls what it lacks of them, and deletes a snapshot's copy with the snapshot; credentials from BOTHY_REGISTRY_USER and BOTHY_REGISTRY_PASSWORD; images bothy did not make are referenced as they are (BOTHY_REGISTRY)")
	fs.StringVar(&c.Runtime, "runtime", env("BOTHY_RUNTIME", "docker"), "where sandboxes run: 'docker' (the local engine) or 'kubernetes' (a cluster with agent-sandbox, through -kubeconfig; needs -registry, where the cluster pulls bothy's images; runs and apps stay on the local engine; docs/kubernetes.md) (BOTHY_RUNTIME)")
	fs.StringVar(&c.Kubeconfig, "kubeconfig", env("KUBECONFIG", ""), "the kubeconfig of the cluster of -runtime kubernetes; empty: the in-cluster config (KUBECONFIG)")
	fs.StringVar(&c.KubeNamespace, "kube-namespace", env("BOTHY_KUBE_NAMESPACE", "bothy-sandboxes"), "the namespace that holds every object of -runtime kubernetes; it must exist (BOTHY_KUBE_NAMESPACE)")
	fs.StringVar(&c.KubeClass, "kube-runtime-class", env("BOTHY_KUBE_RUNTIME_CLASS", ""), "runtimeClassName of every sandbox pod (gVisor, Kata), empty for the cluster's default (BOTHY_KUBE_RUNTIME_CLASS)")
	fs.BoolVar(&c.KubeUserNS, "kube-userns", env("BOTHY_KUBE_USERNS", "") == "true", "run each sandbox pod in a user namespace of its own (hostUsers: false); the nodes must support it (BOTHY_KUBE_USERNS)")
	fs.StringVar(&c.RegistryCA, "registry-ca", env("BOTHY_REGISTRY_CA", ""), "PEM file of the CA the registry's certificate chains to, for bothy's own calls to it; the engine that pushes and pulls needs the same file where it looks (/etc/docker/certs.d/HOST:PORT/ca.crt). Without it: the system's roots, or plain HTTP to a loopback registry, as the engine does (BOTHY_REGISTRY_CA)")
	fs.StringVar(&c.PreviewDomain, "preview-domain", env("BOTHY_PREVIEW_DOMAIN", ""), "serve exposed ports at http://{port}-{sandbox id}.{this domain}/ (needs a wildcard DNS record, and a TLS front in production; 'localhost' works in browsers on this machine) (BOTHY_PREVIEW_DOMAIN)")
	fs.StringVar(&c.BuildImage, "build-image", "", "build this built-in image if it is missing (bothy/base, bothy/busybox...), then exit instead of serving")
	fs.StringVar(&level, "log-level", env("BOTHY_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.BoolVar(&c.LogJSON, "log-json", false, "log JSON lines instead of text")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	c.AdminKey = os.Getenv("BOTHY_ADMIN_KEY")
	if c.SandboxPools, err = parseSandboxPools(*sandboxPool, c.DefaultImage); err != nil {
		return config{}, fmt.Errorf("-sandbox-pool: %w", err)
	}
	if _, ok := os.LookupEnv("GOGC"); ok {
		c.GCPercent = 0 // the runtime already applied GOGC
	}
	if _, ok := os.LookupEnv("GOMAXPROCS"); ok {
		c.MaxProcs = 0 // the runtime already applied it
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		c.MemoryLimit = 0 // likewise
	}
	for _, r := range strings.Split(*ranges, ",") {
		if r = strings.TrimSpace(r); r != "" {
			c.AllowedRanges = append(c.AllowedRanges, r)
		}
	}
	for _, o := range strings.Split(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return config{}, fmt.Errorf("-log-level: %w", err)
	}
	if c.AgentBinary == "" {
		if exe, err := os.Executable(); err == nil {
			c.AgentBinary = filepath.Join(filepath.Dir(exe), "bothy-agent")
		}
	}
	if c.Runtime == "kubernetes" {
		// The cluster's pods are reached over the network only, and a
		// checkpoint is the agent's: there is no engine to commit.
		c.AgentTransport, c.Checkpoint = orchestrator.TransportTCP, orchestrator.CheckpointAgent
	}
	return c, c.Validate()
}

// Validate reports every problem with the configuration at once.
func (c config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("-listen %q: %w", c.Listen, err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("-data is required"))
	}
	if fi, err := os.Stat(c.AgentBinary); err != nil || fi.IsDir() {
		errs = append(errs, fmt.Errorf("-agent: no bothy-agent binary at %q (run make build)", c.AgentBinary))
	}
	if c.AdminKey != "" && len(c.AdminKey) < 16 {
		errs = append(errs, errors.New("BOTHY_ADMIN_KEY must be at least 16 characters"))
	}
	if c.Bridge == "" || len(c.Bridge) > 15 {
		errs = append(errs, fmt.Errorf("-bridge %q: want 1 to 15 characters", c.Bridge))
	}
	if c.OrphanGrace <= 0 || c.ReconcileEvery <= 0 {
		errs = append(errs, errors.New("-orphan-grace and -reconcile-every must be positive"))
	}
	for _, o := range c.AllowedOrigins {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
			errs = append(errs, fmt.Errorf("-allowed-origins: %q is not scheme://host[:port]", o))
		}
	}
	if d := strings.Trim(c.PreviewDomain, "."); c.PreviewDomain != "" && (d == "" || strings.ContainsAny(d, "/:*@ ")) {
		errs = append(errs, fmt.Errorf("-preview-domain %q: want a domain name, as preview.example.com", c.PreviewDomain))
	}
	if r := c.Registry; r != "" && (strings.ContainsAny(r, "/@ ") || strings.HasPrefix(r, "-")) {
		errs = append(errs, fmt.Errorf("-registry %q: want HOST[:PORT], as registry.example.com:5000", r))
	}
	if c.RegistryCA != "" && c.Registry == "" {
		errs = append(errs, errors.New("-registry-ca: without -registry there is no registry to trust"))
	}
	switch c.Runtime {
	case "docker":
	case "kubernetes":
		if c.Registry == "" {
			errs = append(errs, errors.New("-runtime kubernetes needs -registry: the cluster pulls bothy's images (base, agent, snapshots) from there"))
		}
	default:
		errs = append(errs, fmt.Errorf("-runtime %q: want docker or kubernetes", c.Runtime))
	}
	if c.Checkpoint != orchestrator.CheckpointCommit && c.Checkpoint != orchestrator.CheckpointAgent {
		errs = append(errs, fmt.Errorf("-checkpoint %q: want commit or agent", c.Checkpoint))
	}
	if c.AgentTransport != orchestrator.TransportUnix && c.AgentTransport != orchestrator.TransportTCP {
		errs = append(errs, fmt.Errorf("-agent-transport %q: want unix or tcp", c.AgentTransport))
	}
	if c.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("-metrics-listen %q: %w", c.MetricsListen, err))
		}
	}
	for _, r := range c.AllowedRanges {
		if _, _, err := net.ParseCIDR(r); err != nil {
			errs = append(errs, fmt.Errorf("-allow-private: %q is not a CIDR range", r))
		}
	}
	if q := c.Quota; q.Sandboxes < 0 || q.Running < 0 || q.MemoryMB < 0 || q.CPUs < 0 || q.DiskMB < 0 || q.Snapshots < 0 || q.SnapshotBytes < 0 {
		errs = append(errs, errors.New("-quota-* flags must not be negative"))
	}
	if c.DiskMB < 64 || c.MaxDiskMB < c.DiskMB {
		errs = append(errs, errors.New("-sandbox-disk-mb must be at least 64 and at most -max-disk-mb"))
	}
	if c.MaxProcs < 0 {
		errs = append(errs, errors.New("-gomaxprocs must not be negative"))
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 4*c.Bounds.OutputBytes {
		errs = append(errs, errors.New("-memory-limit must be at least 4 times -output-budget"))
	}
	if c.Bounds.OutputBytes < 1<<20 || c.Bounds.BodyBytes < 1<<20 {
		errs = append(errs, errors.New("-output-budget and -body-budget must be at least 1 MiB"))
	}
	if b := c.Bounds; b.PerKey < 1 || b.PerSandbox < 1 || b.PerPort < 1 || b.WriteIdle < time.Second || b.ReadIdle < time.Second {
		errs = append(errs, errors.New("-requests-per-* must be positive, -write-idle and -read-idle at least 1s"))
	}
	if c.MaxFileBytes < 1 || c.MaxExtract < 1 {
		errs = append(errs, errors.New("-max-file-bytes and -max-extract-bytes must be positive"))
	}
	if c.BodyLimit < 1024 {
		errs = append(errs, errors.New("-body-limit must be at least 1024"))
	}
	if c.RatePerKey < 0 || c.RatePerApp < 0 || c.BurstPerKey < 0 || c.BurstPerApp < 0 || c.Concurrency < 0 || c.PoolMinIdle < 0 || c.PoolMaxTotal < 1 || c.AppIdle <= 0 {
		errs = append(errs, errors.New("rate, burst, concurrency and pool flags must not be negative (and -pool-max, -app-idle positive)"))
	}
	if strings.TrimSpace(c.DefaultImage) == "" {
		errs = append(errs, errors.New("-default-image is required"))
	}
	return errors.Join(errs...)
}

// parseSandboxPools reads -sandbox-pool: "IMAGE:N" entries, comma-separated.
func parseSandboxPools(v, defaultImage string) ([]orchestrator.PoolClass, error) {
	var out []orchestrator.PoolClass
	for _, entry := range strings.Split(v, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" || entry == "0" {
			continue
		}
		i := strings.LastIndex(entry, ":")
		if i <= 0 {
			return nil, fmt.Errorf("%q: want IMAGE:N", entry)
		}
		image, n := entry[:i], entry[i+1:]
		size, err := strconv.Atoi(n)
		if err != nil || size < 0 || size > 1000 {
			return nil, fmt.Errorf("%q: N must be 0 to 1000", entry)
		}
		switch {
		case image == "default":
			image = defaultImage
		case !strings.Contains(image, "/"):
			image = "bothy/" + image
		}
		if strings.HasPrefix(image, "bothy/snapshot:") {
			return nil, fmt.Errorf("%q: a snapshot's image belongs to a key, not to a pool", entry)
		}
		if size > 0 {
			out = append(out, orchestrator.PoolClass{Image: image, Size: size})
		}
	}
	return out, nil
}
