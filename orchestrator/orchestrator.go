package orchestrator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bothy/bothy/agent/wire"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/runtime"
)

// Runtime is what the orchestrator needs of a container engine.
type Runtime interface {
	Create(ctx context.Context, spec runtime.Spec) (string, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	Rename(ctx context.Context, id, name string) error
	Inspect(ctx context.Context, id string) (runtime.Container, error)
	List(ctx context.Context, labels map[string]string) ([]runtime.Container, error)
	EnsureNetwork(ctx context.Context, spec runtime.NetworkSpec) error
	Info(ctx context.Context) (runtime.EngineInfo, error)
}

// Images makes an image exist before a sandbox uses it, and refuses an image
// the sandbox's owner may not use.
type Images interface {
	EnsureFor(ctx context.Context, owner, ref string, progress func(string)) (runtime.Image, error)
}

// BlockedRanges are the destinations no sandbox reaches (unless a range of
// Config.AllowedRanges holds the address): link-local (cloud metadata),
// private (RFC 1918), shared (CGNAT) and unique-local IPv6 addresses, and the
// other non-public ranges that name somebody's internal network. The host
// itself is fenced off separately, on every address.
var BlockedRanges = []string{
	"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
	"192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
	"fc00::/7", "fe80::/10", "ff00::/8",
}

// Capabilities are those kept for root inside a sandbox; every other one is
// dropped.
var Capabilities = []string{"CHOWN", "SETUID", "SETGID", "DAC_OVERRIDE", "FOWNER", "KILL", "NET_BIND_SERVICE"}

// Config is the orchestrator's part of bothy's configuration.
type Config struct {
	// Instance labels everything this bothy creates, so that several can share
	// an engine without touching each other's containers.
	Instance string
	// DataDir holds the per-sandbox socket directories and the agent binary.
	DataDir string
	// AgentBinary is the host path of the static bothy-agent.
	AgentBinary string
	Network     string
	Bridge      string
	// AllowedRanges (CIDR) are reachable from sandboxes although they lie in
	// BlockedRanges.
	AllowedRanges []string
	DefaultImage  string
	Limits        Limits
	// Quotas, when set, tells each owner's quota; creates and starts past
	// it are refused.
	Quotas QuotaFunc
	// Pools are the warm sandbox pools (none when empty).
	Pools []PoolClass
	// Checkpoints keeps snapshots; nil: the operations on snapshots
	// answer that they are not served.
	Checkpoints Checkpoints
	// Transport is the agent channel's transport of new sandboxes:
	// TransportUnix (the default) or TransportTCP. A sandbox without a
	// network always uses the socket.
	Transport string
	// NetworkOnly: the runtime's containers are reached over the network
	// only (a cluster's pods), so every sandbox uses TransportTCP, one
	// without a network too (its runtime lets only bothy in).
	NetworkOnly bool
	// Checkpoint is how a running sandbox's checkpoint is taken:
	// CheckpointCommit (the default) or CheckpointAgent.
	Checkpoint string

	ReadyTimeout   time.Duration // from container start to the agent's hello
	StopTimeout    time.Duration // from SIGTERM to SIGKILL on stop
	OrphanGrace    time.Duration // how old an unknown labelled container must be before removal
	ReconcileEvery time.Duration
	ReapEvery      time.Duration

	// Now is the clock of activity, idle and TTL times and orphan ages;
	// time.Now when nil.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.Checkpoints == nil {
		c.Checkpoints = noCheckpoints{}
	}
	if c.Transport == "" {
		c.Transport = TransportUnix
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 30 * time.Second
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = 3 * time.Second
	}
	if c.OrphanGrace == 0 {
		c.OrphanGrace = 2 * time.Minute
	}
	if c.ReconcileEvery == 0 {
		c.ReconcileEvery = 30 * time.Second
	}
	if c.ReapEvery == 0 {
		c.ReapEvery = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Limits == (Limits{}) {
		c.Limits = DefaultLimits()
	}
	if c.Limits.MaxDiskMB == 0 {
		c.Limits.MaxDiskMB = DefaultLimits().MaxDiskMB
	}
	if c.Limits.DefaultDiskMB == 0 {
		c.Limits.DefaultDiskMB = min(DefaultLimits().DefaultDiskMB, c.Limits.MaxDiskMB)
	}
}

// Orchestrator runs sandboxes.
type Orchestrator struct {
	cfg    Config
	rt     Runtime
	images Images
	store  *store
	log    *slog.Logger
	locks  *keyedLock

	agentHost string // the host copy of the agent binary that containers mount
	rootUID   int    // the host uid of root in a container: the agent's
	// diskLimits names how the engine enforces a sandbox's disk size.
	diskLimits string

	mu   sync.Mutex
	live map[string]*live

	// creates and deletes count sandboxes made and deleted since start.
	creates, deletes atomic.Int64

	pools    []*sandboxPool
	poolKick chan struct{}

	// ca signs the credentials of the network transport, opened on first use.
	caMu sync.Mutex
	ca   *agent.CA

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// live is the in-memory side of a sandbox: its agent endpoint and activity.
type live struct {
	ep         *agent.Endpoint
	lastActive atomic.Int64 // unix nanoseconds
	inflight   atomic.Int64 // data-plane calls running now
	awakeBy    atomic.Pointer[string]
	// cpu and cpuAt are the last sample of its processes' CPU time, and
	// when (by the monotonic clock) it was taken; cpuAt zero: none yet.
	cpu   time.Duration
	cpuAt time.Time

	mu          sync.Mutex
	calls       context.Context // cancelled to interrupt the calls running now
	cancelCalls context.CancelFunc
}

// callContext returns the context that interrupt cancels.
func (l *live) callContext() context.Context {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls == nil {
		l.calls, l.cancelCalls = context.WithCancel(context.Background())
	}
	return l.calls
}

// interrupt cancels the data-plane calls running now (their processes are
// killed), so that a stop or delete does not wait behind a long command.
func (l *live) interrupt() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancelCalls != nil {
		l.cancelCalls()
		l.calls, l.cancelCalls = nil, nil
	}
}

// New opens the store (migrating it), prepares the data directory and the agent
// binary, and makes the sandbox network. Run begins the background work.
func New(ctx context.Context, cfg Config, rt Runtime, images Images, d *sql.DB, log *slog.Logger) (*Orchestrator, error) {
	cfg.setDefaults()
	if cfg.Instance == "" || cfg.DataDir == "" || cfg.AgentBinary == "" || cfg.Network == "" {
		return nil, errors.New("orchestrator: Instance, DataDir, AgentBinary and Network are required")
	}
	if cfg.Transport != "" && cfg.Transport != TransportUnix && cfg.Transport != TransportTCP {
		return nil, fmt.Errorf("orchestrator: transport %q: want %q or %q", cfg.Transport, TransportUnix, TransportTCP)
	}
	if n := len(filepath.Join(cfg.DataDir, "run", "sb-0123456789abcdef", wire.SocketName)); n > 100 {
		return nil, fmt.Errorf("orchestrator: data directory %s is too long for unix socket paths (%d bytes)", cfg.DataDir, n)
	}
	st, err := openStore(ctx, d)
	if err != nil {
		return nil, err
	}
	o := &Orchestrator{
		cfg: cfg, rt: rt, images: images, store: st, locks: newKeyedLock(),
		log:  log.With("component", "orchestrator"),
		live: map[string]*live{}, poolKick: make(chan struct{}, 1),
	}
	info, err := rt.Info(ctx)
	if err != nil {
		return nil, err
	}
	o.rootUID, o.diskLimits = info.RootUID, info.DiskLimits
	if err := o.newPools(); err != nil {
		return nil, err
	}
	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "run"), filepath.Join(cfg.DataDir, "agent")} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, err
		}
		// A remapped root in the container must traverse to its socket and
		// the agent binary, and list nothing on the way.
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
	}
	hidden, err := hideRunDir(filepath.Join(cfg.DataDir, "run"))
	if err != nil {
		o.log.Warn("containers will see the host path of the data directory in their mount table", "why", err)
	}
	if err := o.installAgent(hidden); err != nil {
		return nil, err
	}
	if err := rt.EnsureNetwork(ctx, runtime.NetworkSpec{
		Name: cfg.Network, Bridge: cfg.Bridge, Isolated: true,
		Blocked: BlockedRanges, Allowed: cfg.AllowedRanges,
		Labels: map[string]string{runtime.LabelKind: runtime.KindNetwork},
	}); err != nil {
		return nil, err
	}
	return o, nil
}

// installAgent copies the agent binary under the data directory, named by its
// hash, so that running containers keep the exact binary they started with.
// With the run directory hidden, containers mount the copies in it.
func (o *Orchestrator) installAgent(hidden bool) error {
	b, err := os.ReadFile(o.cfg.AgentBinary)
	if err != nil {
		return fmt.Errorf("read agent binary: %w", err)
	}
	sum := sha256.Sum256(b)
	dst := filepath.Join(o.cfg.DataDir, "agent", "bothy-agent-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(dst); err != nil {
		tmp := dst + ".tmp"
		if err := os.WriteFile(tmp, b, 0o755); err != nil {
			return fmt.Errorf("install agent binary: %w", err)
		}
		if err := os.Rename(tmp, dst); err != nil {
			return fmt.Errorf("install agent binary: %w", err)
		}
	}
	o.agentHost = dst
	if hidden {
		run := filepath.Join(o.cfg.DataDir, "run", ".agent")
		if err := copyAgents(filepath.Dir(dst), run); err != nil {
			return fmt.Errorf("install agent binary: %w", err)
		}
		o.agentHost = filepath.Join(run, filepath.Base(dst))
	}
	return nil
}

// AgentHost is the host path of the installed agent binary, which other
// containers bothy makes (runners) mount too.
func (o *Orchestrator) AgentHost() string { return o.agentHost }

// Run reconciles the store with the engine, then runs reconcile and the reaper
// in the background until Close.
func (o *Orchestrator) Run(ctx context.Context) error {
	if err := o.Reconcile(ctx); err != nil {
		return fmt.Errorf("initial reconcile: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	o.cancel = cancel
	o.every(loopCtx, o.cfg.ReconcileEvery, func(ctx context.Context) {
		if err := o.Reconcile(ctx); err != nil && ctx.Err() == nil {
			o.log.Warn("reconcile", "err", err)
		}
	})
	o.every(loopCtx, o.cfg.ReapEvery, o.reap)
	// Pooled sandboxes of a class no longer configured (all of them, when
	// no pool is) are deleted here, not left running.
	if err := o.adoptPooled(ctx); err != nil {
		return fmt.Errorf("adopt pooled sandboxes: %w", err)
	}
	if len(o.pools) > 0 {
		o.wg.Add(1)
		go o.fillPools(loopCtx)
	}
	return nil
}

func (o *Orchestrator) every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fn(ctx)
			}
		}
	}()
}

// Close stops the background loops and closes every agent endpoint. Containers
// keep running: a restarted bothy adopts them.
func (o *Orchestrator) Close() {
	if o.cancel != nil {
		o.cancel()
	}
	o.wg.Wait()
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, l := range o.live {
		l.ep.Close()
		delete(o.live, id)
	}
}

// endpoint returns the live entry of id, listening on its socket if not yet.
func (o *Orchestrator) endpoint(sb *Sandbox) (*live, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if l, ok := o.live[sb.ID]; ok {
		return l, nil
	}
	dir := o.runDir(sb.ID)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	if err := agent.WriteToken(dir, sb.token, o.rootUID); err != nil {
		return nil, err
	}
	ep, err := o.newEndpoint(sb, dir)
	if err != nil {
		return nil, err
	}
	l := &live{ep: ep}
	l.lastActive.Store(o.now().UnixNano())
	o.live[sb.ID] = l
	return l, nil
}

// active records activity now, for why.
func (l *live) active(now time.Time, why string) {
	l.lastActive.Store(now.UnixNano())
	l.awakeBy.Store(&why)
}

// awake says what last kept the sandbox awake.
func (l *live) awake() string {
	if p := l.awakeBy.Load(); p != nil {
		return *p
	}
	return ""
}

// interrupt cancels id's running data-plane calls, if it has any.
func (o *Orchestrator) interrupt(id string) {
	if l := o.lookupLive(id); l != nil {
		l.interrupt()
	}
}

// dropEndpoint closes id's endpoint and removes its socket directory.
func (o *Orchestrator) dropEndpoint(id string) {
	o.mu.Lock()
	l, ok := o.live[id]
	delete(o.live, id)
	o.mu.Unlock()
	if ok {
		l.ep.Close()
	}
	os.RemoveAll(o.runDir(id))
}

func (o *Orchestrator) lookupLive(id string) *live {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.live[id]
}

func (o *Orchestrator) now() time.Time { return o.cfg.Now() }

func (o *Orchestrator) runDir(id string) string { return filepath.Join(o.cfg.DataDir, "run", id) }

// transition moves sb to next (checked against the state diagram) and saves it.
func (o *Orchestrator) transition(ctx context.Context, sb *Sandbox, next State, reason string) error {
	if err := sb.State.check(next); err != nil {
		return err
	}
	o.log.Debug("transition", "sandbox_id", sb.ID, "from", sb.State, "to", next)
	sb.State, sb.Error, sb.UpdatedAt = next, reason, o.now()
	if next == StateDeleted {
		return o.store.delete(ctx, sb.ID)
	}
	return o.store.update(ctx, sb)
}

// Get returns owner's sandbox id; another owner's is not found.
func (o *Orchestrator) Get(ctx context.Context, owner, id string) (Sandbox, error) {
	sb, err := o.store.get(ctx, id)
	if err != nil {
		return Sandbox{}, err
	}
	if sb.Owner != owner {
		return Sandbox{}, notFound(id)
	}
	if l := o.lookupLive(id); l != nil {
		sb.LastActiveAt = time.Unix(0, l.lastActive.Load())
		sb.AwakeBy = l.awake()
	}
	return sb, nil
}

// OwnerOf names the owner of sandbox id, for a request that something other
// than an API key authorises (an exposed port's token).
func (o *Orchestrator) OwnerOf(ctx context.Context, id string) (string, error) {
	sb, err := o.store.get(ctx, id)
	if err != nil {
		return "", err
	}
	return sb.Owner, nil
}

// List returns owner's sandboxes matching f, and the cursor of the next page.
func (o *Orchestrator) List(ctx context.Context, owner string, f ListFilter) ([]Sandbox, int64, error) {
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	out, next, err := o.store.list(ctx, owner, f)
	if err != nil {
		return nil, 0, err
	}
	for i := range out {
		if l := o.lookupLive(out[i].ID); l != nil {
			out[i].LastActiveAt = time.Unix(0, l.lastActive.Load())
		}
	}
	return out, next, nil
}

func newID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = io.ReadFull(rand.Reader, b)
	return prefix + hex.EncodeToString(b)
}
