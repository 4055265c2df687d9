package bounds

import (
	"fmt"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// Gate caps what is in flight under each name (a key, a sandbox, a port):
// past its limit, entering fails with a BusyError instead of queueing.
type Gate struct {
	limit int
	what  string

	mu sync.Mutex
	n  map[string]int
}

// NewGate admits up to limit at once under each name; what names the count
// in refusals ("requests of this key"). A limit of 0 or less admits all.
func NewGate(limit int, what string) *Gate {
	return &Gate{limit: limit, what: what, n: map[string]int{}}
}

// Limit is the most admitted at once under one name.
func (g *Gate) Limit() int { return g.limit }

// Enter admits one more under name and returns the function that lets it
// out again (safe to call more than once).
func (g *Gate) Enter(name string) (func(), error) {
	if g.limit <= 0 {
		return func() {}, nil
	}
	g.mu.Lock()
	if g.n[name] >= g.limit {
		g.mu.Unlock()
		return nil, &BusyError{Msg: fmt.Sprintf("too many %s in flight (at most %d): retry when some have ended", g.what, g.limit)}
	}
	g.n[name]++
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			if g.n[name]--; g.n[name] <= 0 {
				delete(g.n, name)
			}
			g.mu.Unlock()
		})
	}, nil
}

// InFlight is what name holds now.
func (g *Gate) InFlight(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n[name]
}

// BusyError is a refusal because a cap is reached: a 429 that says to come
// back soon. It is errdefs' ResourceExhausted.
type BusyError struct{ Msg string }

func (e *BusyError) Error() string { return e.Msg }

// Unwrap makes errors.Is(err, errdefs.ErrResourceExhausted) hold.
func (e *BusyError) Unwrap() error { return cerrdefs.ErrResourceExhausted }

// RetryAfter is when to come back.
func (e *BusyError) RetryAfter() time.Duration { return time.Second }
