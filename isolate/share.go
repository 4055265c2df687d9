package isolate

import (
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// Runner capacity is shared fairly. Every runner container counts against
// one server-wide cap (Config.MaxTotal), whatever its pool; and every runner
// a key holds (running its code, or idle and leased to it for its next run)
// counts against that key's share (Config.MaxPerKey). When the cap is
// reached, a runner that is only waiting (idle in a pool, or idle and leased
// to the key that holds the most) is reclaimed for the one that needs it.

// memoryClasses are the memory sizes runners are made with: a run or an app
// asking for memory_mb gets the smallest class that holds it, so that the
// pools are few and fixed.
var memoryClasses = []int64{128, 256, 512, 1024, 2048, MaxMemoryMB}

// memoryClass is the class that holds mb (mb is within the limits).
func memoryClass(mb int64) int64 {
	for _, c := range memoryClasses {
		if mb <= c {
			return c
		}
	}
	return memoryClasses[len(memoryClasses)-1]
}

// errAtCapacity refuses a runner when every one is busy.
func (s *Service) errAtCapacity() error {
	return cerrdefs.ErrResourceExhausted.WithMessage(fmt.Sprintf(
		"all %d runners are busy; try again shortly", s.cfg.MaxTotal))
}

// reserve counts a new runner against the server-wide cap, reclaiming a
// waiting runner when the cap is reached and reclaim is set. It reports
// whether the runner may be made.
func (s *Service) reserve(reclaim bool) bool {
	s.mu.Lock()
	if s.total < s.cfg.MaxTotal {
		s.total++
		s.mu.Unlock()
		return true
	}
	var victim *runner
	if reclaim {
		victim = s.victim()
	}
	if victim == nil {
		s.mu.Unlock()
		return false
	}
	// The victim's place goes to the new runner at once.
	victim.reserved = false
	s.mu.Unlock()
	s.log.Debug("reclaimed a waiting runner", "runner", victim.id, "pool", victim.prof.String(), "owner", victim.owner)
	s.destroy(victim)
	return true
}

// victim takes out, for destruction, a runner that is only waiting: an idle
// one from the pool that has the most, or else one idle and leased to the key
// that holds the most runners. Called with s.mu held.
func (s *Service) victim() *runner {
	var best *pool
	most := 0
	for _, p := range s.pools {
		if n := p.idleCount(); n > most {
			best, most = p, n
		}
	}
	if best != nil {
		if r := best.takeIdle(); r != nil {
			return r
		}
	}
	var key string
	held := 0
	for k, rs := range s.leases {
		if len(rs) > 0 && s.held[rs[0].owner] > held {
			key, held = k, s.held[rs[0].owner]
		}
	}
	if key == "" {
		return nil
	}
	return s.takeOldestLease(key)
}

// takeOldestLease takes out the longest idle runner leased under key, which
// has one. Called with s.mu held.
func (s *Service) takeOldestLease(key string) *runner {
	rs := s.leases[key]
	r := rs[0]
	if len(rs) == 1 {
		delete(s.leases, key)
	} else {
		s.leases[key] = rs[1:]
	}
	return r
}

// unreserve gives back r's place under the cap and its owner's share; it is
// idempotent.
func (s *Service) unreserve(r *runner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.reserved {
		r.reserved = false
		s.total--
	}
	if r.owner != "" {
		if s.held[r.owner]--; s.held[r.owner] <= 0 {
			delete(s.held, r.owner)
		}
		r.owner = ""
	}
}

// unhold gives back a place in owner's share that hold counted for a runner
// that was never had.
func (s *Service) unhold(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held[owner]--; s.held[owner] <= 0 {
		delete(s.held, owner)
	}
}

// hold counts a runner taken for owner against owner's share. When owner
// already holds its share, one of its own idle leases (of another runtime or
// size) is given up for it; failing that, the take is refused.
func (s *Service) hold(owner string) error {
	s.mu.Lock()
	if s.held[owner] < s.cfg.MaxPerKey {
		s.held[owner]++
		s.mu.Unlock()
		return nil
	}
	var own *runner
	for k, rs := range s.leases {
		if len(rs) > 0 && rs[0].owner == owner {
			own = s.takeOldestLease(k)
			break
		}
	}
	s.mu.Unlock()
	if own == nil {
		return cerrdefs.ErrResourceExhausted.WithMessage(fmt.Sprintf(
			"this key holds its share of %d runners, all running; try again when one finishes", s.cfg.MaxPerKey))
	}
	s.destroy(own) // gives its place in owner's share back
	return s.hold(owner)
}
