package isolate

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// profile keys a pool: a runtime and the limits its runners are made with.
type profile struct {
	runtime  string
	memoryMB int64
}

func (p profile) String() string { return fmt.Sprintf("%s/%dm", p.runtime, p.memoryMB) }

// PoolStats is what GET /v1/pools shows of one pool.
type PoolStats struct {
	Runtime  string
	MemoryMB int64
	Idle     int // warm runners waiting in the pool
	Leased   int // runners out of the pool: leased to an owner or an app, or running
	Starting int
	MinIdle  int
	Target   int // the adaptive idle target
	MaxTotal int
	Hits     uint64 // takes served by a warm runner
	Misses   uint64 // takes that had to start a runner
	Failures uint64 // runner starts that failed
	// RefillP50Ms and RefillLastMs are create -> agent-ready latencies.
	RefillP50Ms  float64
	RefillLastMs float64
}

// refillDelay is how long after a hit the pool starts replacing the runner.
const refillDelay = 100 * time.Millisecond

// pool keeps warm runners of one profile. Its goroutine (run) owns refilling:
// it starts runners while idle+starting is below the target, up to the
// refill concurrency and the pool's maximum, backing off after failures.
type pool struct {
	s    *Service
	prof profile

	mu       sync.Mutex
	idle     []*runner
	starting int
	leased   int
	minIdle  int
	target   int
	lastMiss time.Time
	hits     uint64
	misses   uint64
	failures uint64
	backoff  time.Duration
	retryAt  time.Time
	refills  []float64 // recent refill latencies, ms
	last     float64

	wake chan struct{}
	wg   sync.WaitGroup
}

// pool returns the pool of prof, starting it when it is new.
func (s *Service) pool(prof profile) *pool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pools[prof]; ok {
		return p
	}
	minIdle := 0
	if prof.memoryMB == s.cfg.DefaultMemoryMB {
		minIdle = s.cfg.MinIdle[prof.runtime]
	}
	p := &pool{s: s, prof: prof, minIdle: minIdle, target: minIdle, wake: make(chan struct{}, 1)}
	s.pools[prof] = p
	p.wg.Add(1)
	go p.run(s.life)
	return p
}

func (p *pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// take returns a warm runner (hit) or starts one (miss). The runner is no
// longer the pool's: the caller leases or destroys it.
func (p *pool) take(ctx context.Context) (*runner, bool, error) {
	p.mu.Lock()
	p.pruneDead()
	if n := len(p.idle); n > 0 {
		r := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.leased++
		p.hits++
		r.counted = true
		p.mu.Unlock()
		// The refill waits a moment, so that the engine's work does not
		// compete for the CPU with the run that took this runner.
		time.AfterFunc(refillDelay, p.poke)
		return r, true, nil
	}
	p.misses++
	p.lastMiss = time.Now()
	p.target = min(p.target+1, max(p.s.cfg.MaxIdle, p.minIdle))
	p.leased++
	p.mu.Unlock()
	p.poke()
	t0 := time.Now()
	r, err := p.s.newRunner(ctx, p.prof, true)
	if err != nil {
		p.mu.Lock()
		p.leased--
		p.failures++
		p.mu.Unlock()
		return nil, false, err
	}
	r.counted = true
	p.record(time.Since(t0))
	return r, false, nil
}

// released is called (under Service.mu) when a runner taken from this pool
// (counted in leased) is destroyed.
func (p *pool) released() {
	p.mu.Lock()
	if p.leased > 0 {
		p.leased--
	}
	p.mu.Unlock()
	p.poke()
}

func (p *pool) record(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last = float64(d.Microseconds()) / 1000
	p.refills = append(p.refills, p.last)
	if len(p.refills) > 64 {
		p.refills = p.refills[len(p.refills)-64:]
	}
}

// pruneDead drops idle runners whose agent is gone (a container that was
// killed, or that died); called with p.mu held.
func (p *pool) pruneDead() {
	keep := p.idle[:0]
	for _, r := range p.idle {
		if r.ep.Connected() {
			keep = append(keep, r)
		} else {
			go p.s.destroy(r)
		}
	}
	p.idle = keep
}

func (p *pool) run(ctx context.Context) {
	defer p.wg.Done()
	var starts sync.WaitGroup
	defer starts.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		p.mu.Lock()
		p.pruneDead()
		now := time.Now()
		if p.target > p.minIdle && now.Sub(p.lastMiss) > p.s.cfg.DecayAfter {
			p.target--
			p.lastMiss = now // the next step down waits another period
		}
		var surplus *runner
		if len(p.idle) > p.target {
			// The oldest idle runner goes; the pool shrinks one per tick.
			surplus = p.idle[0]
			p.idle = p.idle[1:]
		}
		n := 0
		for len(p.idle)+p.starting+n < p.target && p.starting+n < p.s.cfg.RefillConcurrency && now.After(p.retryAt) {
			n++
		}
		p.starting += n
		p.mu.Unlock()
		if surplus != nil {
			p.s.destroy(surplus)
		}
		for range n {
			starts.Add(1)
			go func() {
				defer starts.Done()
				p.refill(ctx)
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-tick.C:
		}
	}
}

// refill starts one runner into the pool.
func (p *pool) refill(ctx context.Context) {
	t0 := time.Now()
	r, err := p.s.newRunner(ctx, p.prof, false)
	p.mu.Lock()
	p.starting--
	if cerrdefs.IsResourceExhausted(err) {
		// At the server-wide cap: waiting runners are not worth a busy
		// one's place. The pool tries again on its next tick.
		p.mu.Unlock()
		return
	}
	if err != nil {
		p.failures++
		p.backoff = min(max(2*p.backoff, 250*time.Millisecond), 30*time.Second)
		p.retryAt = time.Now().Add(p.backoff)
		backoff := p.backoff // read under the lock: other refills write it
		p.mu.Unlock()
		if ctx.Err() == nil {
			p.s.log.Warn("runner start failed", "pool", p.prof.String(), "err", err, "retry_in", backoff)
		}
		return
	}
	p.backoff = 0
	if ctx.Err() != nil {
		p.mu.Unlock()
		p.s.destroyNow(context.Background(), r)
		return
	}
	p.idle = append(p.idle, r)
	p.mu.Unlock()
	p.record(time.Since(t0))
	p.poke()
}

// idleCount is how many runners wait in the pool.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// takeIdle takes the oldest idle runner out of the pool, for destruction.
func (p *pool) takeIdle() *runner {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		return nil
	}
	r := p.idle[0]
	p.idle = p.idle[1:]
	return r
}

// wait joins the pool's goroutine (after the service's context is done).
func (p *pool) wait() { p.wg.Wait() }

// drain takes every idle runner out of the pool, for destruction.
func (p *pool) drain() []*runner {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.idle
	p.idle = nil
	return out
}

func (p *pool) stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStats{
		Runtime: p.prof.runtime, MemoryMB: p.prof.memoryMB,
		Idle: len(p.idle), Leased: p.leased, Starting: p.starting,
		MinIdle: p.minIdle, Target: p.target, MaxTotal: p.s.cfg.MaxTotal,
		Hits: p.hits, Misses: p.misses, Failures: p.failures, RefillLastMs: p.last,
	}
	if len(p.refills) > 0 {
		sorted := append([]float64(nil), p.refills...)
		sort.Float64s(sorted)
		st.RefillP50Ms = sorted[len(sorted)/2]
	}
	return st
}

// Ready reports whether every pool has its minimum of idle runners.
func (s *Service) Ready() bool {
	for _, st := range s.Pools() {
		if st.Idle < st.MinIdle {
			return false
		}
	}
	return true
}
