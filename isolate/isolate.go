// Package isolate runs dynamic code and hosts apps in pools of pre-warmed,
// locked-down runner containers.
//
// A runner is a container whose agent has already started a runtime host (a
// Python zygote, a long-lived Node, or bash) before it dialled in, so a runner
// that is connected is warm. Pools, one per runtime and limits profile, keep
// runners ready; each pool's goroutine refills it. A runner leaves its pool for
// exactly one owner (an API key, in process mode), one run (ephemeral mode) or
// one app version, and is destroyed afterwards: it never serves two owners.
package isolate

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/bothy/bothy/agent/wire"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/runtime"
)

// Engine is what isolate needs of a container engine.
type Engine interface {
	Create(ctx context.Context, spec runtime.Spec) (string, error)
	Start(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	List(ctx context.Context, labels map[string]string) ([]runtime.Container, error)
	Info(ctx context.Context) (runtime.EngineInfo, error)
}

// Images ensures the runner images exist.
type Images interface {
	Ensure(ctx context.Context, ref string, progress func(string)) (runtime.Image, error)
}

// Config tunes the pools.
type Config struct {
	Instance string // labels the runners this bothy makes
	DataDir  string // apps/ (one SQLite file per app) and run/ (sockets) live here
	// AgentHost is the host path of the agent binary runners mount.
	AgentHost string
	// Images maps a runtime to its runner image.
	Images map[string]string

	// MinIdle is the floor of warm runners per runtime in its default profile;
	// other profiles start at 0 and grow on demand.
	MinIdle map[string]int
	// MaxIdle caps the adaptive idle target of a pool.
	MaxIdle int
	// MaxTotal caps the runner containers of every pool together: idle,
	// leased and starting.
	MaxTotal int
	// MaxPerKey caps the runners one key holds: running its code, or idle
	// and leased to it.
	MaxPerKey int
	// RefillConcurrency bounds the runners one pool starts at once.
	RefillConcurrency int
	// DecayAfter is how long a pool must go without a miss before its idle
	// target shrinks by one.
	DecayAfter time.Duration

	// MaxRuns recycles a process-mode runner after this many runs.
	MaxRuns int
	// LeaseIdle recycles a process-mode runner idle this long.
	LeaseIdle time.Duration
	// AppIdle evicts an app's runner idle this long.
	AppIdle time.Duration

	DefaultMemoryMB int64
	CPUs            float64
	Pids            int64
	TmpfsMB         int64
	ReadyTimeout    time.Duration

	// Limits admits each run against its key's rates and concurrency; nil
	// admits every run.
	Limits Admitter
	// Ledger records each run; nil records none.
	Ledger Recorder
}

func (c *Config) setDefaults() {
	if c.MinIdle == nil {
		c.MinIdle = map[string]int{wire.RuntimePython: 2, wire.RuntimeNode: 1, wire.RuntimeBash: 1}
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MaxIdle, 8)
	def(&c.MaxTotal, 32)
	def(&c.MaxPerKey, max(1, c.MaxTotal/4))
	def(&c.RefillConcurrency, 2)
	def(&c.MaxRuns, 500)
	if c.DecayAfter <= 0 {
		c.DecayAfter = 30 * time.Second
	}
	if c.LeaseIdle <= 0 {
		c.LeaseIdle = 60 * time.Second
	}
	if c.AppIdle <= 0 {
		c.AppIdle = 60 * time.Second
	}
	if c.DefaultMemoryMB <= 0 {
		c.DefaultMemoryMB = 256
	}
	if c.CPUs <= 0 {
		// A run and the fork of the next run's process overlap: at one
		// CPU, CFS throttling added 25 ms to the p99 of a print(1).
		c.CPUs = 2
	}
	if c.Pids <= 0 {
		c.Pids = 128
	}
	if c.TmpfsMB <= 0 {
		c.TmpfsMB = 64
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 30 * time.Second
	}
}

// Service owns the pools, the runners leased from them, and the apps.
type Service struct {
	cfg    Config
	rt     Engine
	images Images
	log    *slog.Logger
	apps   *appStore

	mu     sync.Mutex
	pools  map[profile]*pool
	leases map[string][]*runner // owner and profile -> idle runners leased to that owner
	live   map[string]*appHost  // app id -> its runner, when warm
	total  int                  // runners made or being made, under MaxTotal
	held   map[string]int       // key -> runners it holds, under MaxPerKey

	// agentUID is the host uid a runner's agent runs as (its nobody).
	agentUID int

	removals chan *runner
	life     context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// runnerUID is the user (and group) a runner runs as: nobody.
const runnerUID = 65534

// New prepares the service: it removes runners an earlier bothy left
// behind (their state cannot be trusted) and migrates the app tables. Start
// begins warming the pools.
func New(ctx context.Context, cfg Config, rt Engine, images Images, d *sql.DB, log *slog.Logger) (*Service, error) {
	cfg.setDefaults()
	if cfg.Instance == "" || cfg.DataDir == "" || cfg.AgentHost == "" {
		return nil, errors.New("isolate: Instance, DataDir and AgentHost are required")
	}
	for _, rt := range []string{wire.RuntimePython, wire.RuntimeNode, wire.RuntimeBash} {
		if cfg.Images[rt] == "" {
			return nil, fmt.Errorf("isolate: no runner image for %s", rt)
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "apps"), 0o700); err != nil {
		return nil, err
	}
	// A runner's remapped user must traverse to its socket, and list
	// nothing on the way.
	for _, dir := range []string{cfg.DataDir, filepath.Join(cfg.DataDir, "run")} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, err
		}
	}
	info, err := rt.Info(ctx)
	if err != nil {
		return nil, err
	}
	apps, err := openAppStore(ctx, d, filepath.Join(cfg.DataDir, "apps"))
	if err != nil {
		return nil, err
	}
	life, cancel := context.WithCancel(context.Background())
	s := &Service{
		cfg: cfg, rt: rt, images: images, log: log.With("component", "isolate"), apps: apps,
		pools: map[profile]*pool{}, leases: map[string][]*runner{}, live: map[string]*appHost{}, held: map[string]int{},
		removals: make(chan *runner, 1024), life: life, cancel: cancel,
		agentUID: info.RootUID + runnerUID,
	}
	if err := s.removeStale(ctx); err != nil {
		cancel()
		return nil, err
	}
	return s, nil
}

// Start ensures the runner images and starts the default pools, the remover
// and the janitor. It returns at once; images build in the background.
func (s *Service) Start() {
	s.wg.Add(2)
	go s.remover()
	go s.janitor()
	for _, rt := range []string{wire.RuntimePython, wire.RuntimeNode, wire.RuntimeBash} {
		s.pool(profile{runtime: rt, memoryMB: s.cfg.DefaultMemoryMB})
	}
}

// Close stops the pools and destroys every runner, waiting for the removals.
func (s *Service) Close() {
	s.cancel()
	s.mu.Lock()
	pools := make([]*pool, 0, len(s.pools))
	for _, p := range s.pools {
		pools = append(pools, p)
	}
	s.mu.Unlock()
	for _, p := range pools {
		p.wait()
	}
	s.mu.Lock()
	var all []*runner
	for _, p := range s.pools {
		all = append(all, p.drain()...)
	}
	for k, rs := range s.leases {
		all = append(all, rs...)
		delete(s.leases, k)
	}
	for id, h := range s.live {
		if h.r != nil {
			all = append(all, h.r)
		}
		if h.db != nil {
			h.db.close()
		}
		delete(s.live, id)
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, r := range all {
		wg.Add(1)
		go func() { defer wg.Done(); s.destroyNow(ctx, r) }()
	}
	wg.Wait()
	s.wg.Wait()
}

// removeStale removes every runner container of this instance.
func (s *Service) removeStale(ctx context.Context) error {
	cs, err := s.rt.List(ctx, map[string]string{runtime.LabelKind: runtime.KindRunner, runtime.LabelInstance: s.cfg.Instance})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.rt.Remove(ctx, c.ID); err != nil {
				s.log.Warn("remove stale runner", "container", c.ID[:12], "err", err)
			}
			_ = os.RemoveAll(filepath.Join(s.cfg.DataDir, "run", c.Labels[runtime.LabelID]))
		}()
	}
	wg.Wait()
	if len(cs) > 0 {
		s.log.Info("removed stale runners", "count", len(cs))
	}
	return nil
}

// runner is one warm container.
type runner struct {
	id   string
	cid  string
	prof profile
	ep   *agent.Endpoint
	conn *agent.Conn

	// counted says the runner left its pool through take and is counted in
	// the pool's leased figure until destroyed.
	counted bool
	// reserved says the runner counts against the server-wide cap; owner,
	// when set, is the key whose share it counts against.
	reserved bool
	owner    string
	runs     int
	lastUsed time.Time
	born     time.Time
}

// newRunner creates, starts and waits for one runner of prof, within the
// server-wide cap (reclaiming a waiting runner for it when reclaim is set).
func (s *Service) newRunner(ctx context.Context, prof profile, reclaim bool) (*runner, error) {
	if !s.reserve(reclaim) {
		return nil, s.errAtCapacity()
	}
	r := &runner{id: newID("rn-", 8), prof: prof, born: time.Now(), reserved: true}
	image := s.cfg.Images[prof.runtime]
	if _, err := s.images.Ensure(ctx, image, nil); err != nil {
		s.unreserve(r)
		return nil, err
	}
	dir := filepath.Join(s.cfg.DataDir, "run", r.id)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	token := newID("", 24)
	if err := agent.WriteToken(dir, token, s.agentUID); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	ep, err := agent.Listen(filepath.Join(dir, wire.SocketName), token, s.log.With("runner", r.id))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	r.ep = ep
	spec := runtime.Spec{
		Name:       "bothy-" + r.id,
		Image:      image,
		Entrypoint: []string{wire.BinaryPath},
		Env: []string{wire.SocketEnv,
			"BOTHY_RUNTIME=" + prof.runtime},
		User:       fmt.Sprintf("%d:%d", runnerUID, runnerUID),
		WorkingDir: "/tmp",
		Hostname:   "runner",
		Labels: map[string]string{
			runtime.LabelID: r.id, runtime.LabelKind: runtime.KindRunner, runtime.LabelInstance: s.cfg.Instance,
			"bothy.runtime": prof.runtime,
		},
		Mounts: []runtime.Mount{
			{Source: s.cfg.AgentHost, Target: wire.BinaryPath, ReadOnly: true},
			{Source: dir, Target: wire.RunMount, ReadOnly: true},
		},
		NanoCPUs:     int64(s.cfg.CPUs * 1e9),
		MemoryBytes:  prof.memoryMB << 20,
		PidsLimit:    s.cfg.Pids,
		Network:      "none",
		ReadOnlyRoot: true,
		Tmpfs:        map[string]string{"/tmp": fmt.Sprintf("rw,nosuid,nodev,size=%dm,mode=1777", s.cfg.TmpfsMB)},
		NoFile:       1024,
		StopTimeout:  time.Second,
	}
	fail := func(err error) (*runner, error) {
		s.destroyNow(context.WithoutCancel(ctx), r)
		return nil, err
	}
	// The create is not cancelled with ctx: the engine would make the
	// container all the same, and no one would know its ID to remove it.
	cid, err := s.rt.Create(context.WithoutCancel(ctx), spec)
	if err != nil {
		return fail(err)
	}
	r.cid = cid
	if err := s.rt.Start(ctx, cid); err != nil {
		return fail(err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.ReadyTimeout)
	defer cancel()
	conn, err := ep.Conn(wctx)
	if err != nil {
		return fail(fmt.Errorf("runner %s did not connect: %w", r.id, err))
	}
	r.conn = conn
	r.lastUsed = time.Now()
	return r, nil
}

// destroy hands r to the remover; its place under the cap is free at once.
func (s *Service) destroy(r *runner) {
	s.unreserve(r)
	r.ep.Drop()
	select {
	case s.removals <- r:
	default:
		go s.destroyNow(context.Background(), r)
	}
}

// destroyNow removes r's container, endpoint and socket directory.
func (s *Service) destroyNow(ctx context.Context, r *runner) {
	s.unreserve(r)
	if r.ep != nil {
		r.ep.Close()
	}
	if r.cid != "" {
		if err := s.rt.Remove(ctx, r.cid); err != nil {
			s.log.Warn("remove runner", "runner", r.id, "err", err)
		}
	}
	_ = os.RemoveAll(filepath.Join(s.cfg.DataDir, "run", r.id))
	if !r.counted {
		return
	}
	s.mu.Lock()
	if p := s.pools[r.prof]; p != nil {
		p.released()
	}
	s.mu.Unlock()
}

// remover removes runners one at a time, so that removals never compete with
// refills for more than one engine call.
func (s *Service) remover() {
	defer s.wg.Done()
	for {
		select {
		case r := <-s.removals:
			s.destroyNow(context.Background(), r)
		case <-s.life.Done():
			for {
				select {
				case r := <-s.removals:
					s.destroyNow(context.Background(), r)
				default:
					return
				}
			}
		}
	}
}

// janitor recycles leased runners and app runners that have been idle too long.
func (s *Service) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.life.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var gone []*runner
		s.mu.Lock()
		for k, rs := range s.leases {
			keep := rs[:0]
			for _, r := range rs {
				if now.Sub(r.lastUsed) > s.cfg.LeaseIdle || !r.ep.Connected() {
					gone = append(gone, r)
				} else {
					keep = append(keep, r)
				}
			}
			if len(keep) == 0 {
				delete(s.leases, k)
			} else {
				s.leases[k] = keep
			}
		}
		for _, h := range s.live {
			if r := h.evictIfIdle(now, s.cfg.AppIdle); r != nil {
				gone = append(gone, r)
			}
		}
		s.mu.Unlock()
		for _, r := range gone {
			s.destroy(r)
		}
	}
}

// Pools reports every pool, default profiles first.
func (s *Service) Pools() []PoolStats {
	s.mu.Lock()
	out := make([]PoolStats, 0, len(s.pools))
	for _, p := range s.pools {
		out = append(out, p.stats())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Runtime != out[j].Runtime {
			return out[i].Runtime < out[j].Runtime
		}
		return out[i].MemoryMB < out[j].MemoryMB
	})
	return out
}

func newID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}
