package orchestrator

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// Warm sandbox pools. A pool keeps sandboxes of one class (an image, with the
// default limits, on the sandbox network) started, their agents connected,
// so that a create of that class takes one instead of starting a container.
//
// A pooled sandbox is an ordinary row of the store whose owner is poolOwner,
// in state running, with no idle timeout and no TTL; its container is
// labelled like any other (Docker labels are fixed at create, so the owner
// in a pooled container's labels stays empty: the store, never the labels,
// says whose a sandbox is). A claim hands the row to its owner in one
// conditional UPDATE (store.claim), so that a row is handed out at most once;
// reconcile sees pooled rows as known, never as orphans; after a restart,
// Run puts the running pooled rows back in their pools and deletes the rest.
//
// What a claim applies after start: the owner, labels, environment (given to
// every command, process and terminal, as for any sandbox), user, working
// directory, idle timeout, idle policy and TTL. A create that asks for other
// limits, another network, another image or a snapshot is cold.

// poolOwner owns the pooled sandboxes: no API key has an empty ID.
const poolOwner = ""

// PoolClass configures a pool: Size sandboxes of Image kept started.
type PoolClass struct {
	Image string
	Size  int
}

// PoolStatus reports a pool.
type PoolStatus struct {
	Image    string
	Size     int
	Ready    int
	Starting int
	Hits     uint64
	Misses   uint64
	Failures uint64
	// Error is the last failure to start a pooled sandbox, and Backoff how
	// long the pool waits before it tries again (empty and zero once one
	// starts).
	Error        string
	Backoff      time.Duration
	LastRefillMs float64
}

type sandboxPool struct {
	image string
	spec  Spec
	size  int
	ready chan string

	starting               atomic.Int32
	hits, misses, failures atomic.Uint64
	mu                     sync.Mutex
	lastErr                string
	backoff                time.Duration
	retryAt                time.Time
	lastRefill             time.Duration
}

const (
	poolBackoffMin = time.Second
	poolBackoffMax = time.Minute
)

// newPools resolves the configured classes. An image must be a reference,
// not a snapshot's image (a snapshot belongs to a key).
func (o *Orchestrator) newPools() error {
	for _, c := range o.cfg.Pools {
		if c.Size <= 0 {
			continue
		}
		image, spec, err := CreateOptions{Image: c.Image}.resolve(o.cfg.DefaultImage, o.cfg.Limits, o.diskLimits)
		if err != nil {
			return fmt.Errorf("sandbox pool %s: %w", c.Image, err)
		}
		spec.IdleTimeout, spec.TTLSeconds = 0, 0
		o.pools = append(o.pools, &sandboxPool{image: image, spec: spec, size: c.Size, ready: make(chan string, c.Size)})
	}
	return nil
}

// Pools reports the sandbox pools.
func (o *Orchestrator) Pools() []PoolStatus {
	out := make([]PoolStatus, 0, len(o.pools))
	for _, p := range o.pools {
		p.mu.Lock()
		st := PoolStatus{Image: p.image, Size: p.size, Ready: len(p.ready), Starting: int(p.starting.Load()),
			Hits: p.hits.Load(), Misses: p.misses.Load(), Failures: p.failures.Load(), Error: p.lastErr, Backoff: p.backoff,
			LastRefillMs: ms(p.lastRefill)}
		p.mu.Unlock()
		out = append(out, st)
	}
	return out
}

// PoolsWarm reports whether every sandbox pool holds its size.
func (o *Orchestrator) PoolsWarm() bool {
	for _, p := range o.pools {
		if len(p.ready) < p.size {
			return false
		}
	}
	return true
}

// poolFor returns the pool a create of image with spec can take from.
// (A create from a snapshot names the snapshot's image: never a pool's.)
func (o *Orchestrator) poolFor(image string, spec Spec) *sandboxPool {
	for _, p := range o.pools {
		// A pooled sandbox started before its spec was known: the
		// agent serves the standard interface only where it was asked at
		// start.
		if p.image == image && sameLimits(p.spec, spec) && !spec.KEP {
			return p
		}
	}
	return nil
}

// claim hands a ready sandbox of p to owner, as spec and opts ask. ok is false
// when the pool has none ready (the create is then cold). The caller holds the
// idempotency lock.
func (o *Orchestrator) claim(ctx context.Context, p *sandboxPool, owner string, spec Spec, opts CreateOptions) (Sandbox, bool, error) {
	for {
		var id string
		select {
		case id = <-p.ready:
		default:
			p.misses.Add(1)
			o.kickPools()
			return Sandbox{}, false, nil
		}
		o.kickPools()
		// Taken off the pool, the sandbox is handed over or put back
		// whatever the caller does meanwhile.
		sb, ok, err := o.claimOne(context.WithoutCancel(ctx), id, owner, spec, opts)
		if err != nil || ok {
			if ok {
				p.hits.Add(1)
			}
			return sb, ok, err
		}
		// That one was no longer fit (its container died): try the next.
	}
}

func (o *Orchestrator) claimOne(ctx context.Context, id, owner string, spec Spec, opts CreateOptions) (Sandbox, bool, error) {
	unlock := o.locks.Lock(id)
	defer unlock()
	sb, err := o.store.get(ctx, id)
	if err != nil || sb.Owner != poolOwner || sb.State != StateRunning || !o.agentUp(id) {
		if err == nil && sb.Owner == poolOwner {
			o.discardPooled(ctx, &sb, "a pooled sandbox that was no longer running")
		}
		return Sandbox{}, false, nil
	}
	unlockQuota := o.locks.Lock("quota\x00" + owner)
	defer unlockQuota()
	if err := o.admit(ctx, owner, spec, true); err != nil {
		// Back to the pool: it is still good.
		o.returnPooled(id, sb.Image)
		return Sandbox{}, false, err
	}
	now := o.now()
	// The claimer's spec, on the transport the sandbox was made with.
	spec.Transport = sb.Spec.Transport
	sb.Owner, sb.Spec, sb.Labels = owner, spec, opts.Labels
	sb.CreatedAt, sb.UpdatedAt, sb.LastActiveAt = now, now, now
	claimed, err := o.store.claim(ctx, &sb)
	if err != nil {
		o.returnPooled(id, sb.Image)
		return Sandbox{}, false, err
	}
	if !claimed {
		return Sandbox{}, false, nil
	}
	if l := o.lookupLive(id); l != nil {
		l.lastActive.Store(now.UnixNano())
	}
	if spec.User != "" {
		if err := o.checkUserOf(ctx, id, spec.User); err != nil {
			// The user does not exist in the image: the sandbox is the
			// caller's now, and goes as a failed cold create would.
			_ = o.delete(ctx, &sb, "its user does not exist")
			return Sandbox{}, false, err
		}
	}
	if opts.IdempotencyKey != "" {
		if err := o.store.remember(ctx, owner, opts.IdempotencyKey, sb.ID); err != nil {
			return Sandbox{}, false, err
		}
	}
	o.creates.Add(1)
	o.log.Info("sandbox created", "sandbox_id", id, "image", sb.Image, "owner", owner, "pooled", true)
	return sb, true, nil
}

// agentUp reports whether id's agent is connected now.
func (o *Orchestrator) agentUp(id string) bool {
	l := o.lookupLive(id)
	if l == nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := l.ep.Conn(ctx)
	return err == nil
}

func (o *Orchestrator) checkUserOf(ctx context.Context, id, user string) error {
	l := o.lookupLive(id)
	if l == nil {
		return cerrdefs.ErrUnavailable.WithMessage("sandbox " + id + " has no agent")
	}
	conn, err := l.ep.Conn(ctx)
	if err != nil {
		return err
	}
	return checkUser(ctx, conn, user)
}

// returnPooled puts a sandbox back in the pool of image (deleting it when the
// pool is full, or gone).
func (o *Orchestrator) returnPooled(id, image string) {
	for _, p := range o.pools {
		if p.image == image {
			select {
			case p.ready <- id:
				return
			default:
			}
		}
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		ctx := context.Background()
		unlock := o.locks.Lock(id)
		defer unlock()
		if sb, err := o.store.get(ctx, id); err == nil && sb.Owner == poolOwner {
			o.discardPooled(ctx, &sb, "its pool is full")
		}
	}()
}

// discardPooled deletes a pooled sandbox and its row. The caller holds its
// lock.
func (o *Orchestrator) discardPooled(ctx context.Context, sb *Sandbox, reason string) {
	if err := o.delete(ctx, sb, reason); err != nil {
		o.log.Warn("discard pooled sandbox", "sandbox_id", sb.ID, "err", err)
	}
}

// kickPools wakes the refill loop.
func (o *Orchestrator) kickPools() {
	select {
	case o.poolKick <- struct{}{}:
	default:
	}
}

// adoptPooled puts the pooled sandboxes a previous run left, those still
// running, back in their pools, and deletes the others.
func (o *Orchestrator) adoptPooled(ctx context.Context) error {
	rows, err := o.store.all(ctx)
	if err != nil {
		return err
	}
	for i := range rows {
		sb := &rows[i]
		if sb.Owner != poolOwner {
			continue
		}
		unlock := o.locks.Lock(sb.ID)
		kept := false
		if sb.State == StateRunning {
			for _, p := range o.pools {
				if p.image == sb.Image && sameClass(p.spec, sb.Spec) {
					select {
					case p.ready <- sb.ID:
						kept = true
					default:
					}
					break
				}
			}
		}
		if !kept {
			o.discardPooled(ctx, sb, "a pooled sandbox the pools no longer need")
		}
		unlock()
	}
	return nil
}

// fillPools keeps every pool at its size, one sandbox at a time (a refill
// must not crowd out the creates it serves), backing off a pool whose
// sandboxes fail to start.
func (o *Orchestrator) fillPools(ctx context.Context) {
	defer o.wg.Done()
	for {
		wait := time.Duration(-1)
		for _, p := range o.pools {
			if len(p.ready)+int(p.starting.Load()) >= p.size {
				continue
			}
			p.mu.Lock()
			retryIn := time.Until(p.retryAt)
			p.mu.Unlock()
			if retryIn > 0 {
				if wait < 0 || retryIn < wait {
					wait = retryIn
				}
				continue
			}
			o.fillOne(ctx, p)
			wait = 0
			break
		}
		if ctx.Err() != nil {
			return
		}
		if wait == 0 {
			continue
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-o.poolKick:
		case <-timer:
		}
	}
}

func (o *Orchestrator) fillOne(ctx context.Context, p *sandboxPool) {
	p.starting.Add(1)
	t0 := time.Now()
	// A start under way is finished (or undone) even when bothy shuts
	// down, which waits for it: cut short, the engine could still make
	// the container after bothy let go of it.
	id, err := o.createPooled(context.WithoutCancel(ctx), p)
	p.starting.Add(-1)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		p.failures.Add(1)
		p.lastErr = err.Error()
		p.backoff = min(max(2*p.backoff, poolBackoffMin), poolBackoffMax)
		p.retryAt = time.Now().Add(p.backoff)
		o.log.Warn("sandbox pool: a sandbox did not start", "image", p.image, "err", err, "retry_in", p.backoff)
		return
	}
	p.lastErr, p.backoff, p.retryAt, p.lastRefill = "", 0, time.Time{}, time.Since(t0)
	select {
	case p.ready <- id:
	default:
		o.returnPooled(id, "") // the pool filled up meanwhile
	}
}

// createPooled starts a sandbox of p's class for the pool.
func (o *Orchestrator) createPooled(ctx context.Context, p *sandboxPool) (id string, err error) {
	if _, err := o.images.EnsureFor(ctx, poolOwner, p.image, nil); err != nil {
		return "", err
	}
	now := o.now()
	sb := Sandbox{
		ID: newID("sb-", 8), Owner: poolOwner, State: StateCreating, Image: p.image, Spec: p.spec,
		Labels: map[string]string{}, CreatedAt: now, UpdatedAt: now, LastActiveAt: now,
		token: newID("", 24),
	}
	sb.Spec.Transport = o.transportOf(sb.Spec)
	id = sb.ID
	unlock := o.locks.Lock(id)
	defer unlock()
	var undo undoStack
	defer undo.run(ctx, &err, o.log.With("sandbox_id", id))
	if err := o.store.insert(ctx, &sb); err != nil {
		return "", err
	}
	undo.push(func(ctx context.Context) error { return o.store.delete(ctx, id) })
	if _, err := o.launch(ctx, &sb, &undo); err != nil {
		return "", err
	}
	return id, nil
}

// sameLimits reports whether two specs ask for what a container is made
// with: the limits and the network.
func sameLimits(a, b Spec) bool {
	return a.CPUs == b.CPUs && a.MemoryMB == b.MemoryMB && a.Pids == b.Pids && a.DiskMB == b.DiskMB && a.Network == b.Network
}

// sameClass reports whether a pooled sandbox's spec b is its pool's (a):
// the same limits, and nothing a claim sets.
func sameClass(a, b Spec) bool {
	return sameLimits(a, b) && len(b.Env) == 0 && b.IdleTimeout == 0 && b.TTLSeconds == 0 && b.User == "" && b.Workdir == ""
}
