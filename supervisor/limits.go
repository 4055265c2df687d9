package supervisor

import (
	"fmt"
	"math"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// LimitError is a request refused by a rate limit or a quota. It is a
// resource-exhausted error (HTTP 429) that says when to retry.
type LimitError struct {
	Msg   string
	After time.Duration
}

func (e *LimitError) Error() string { return e.Msg }

// Unwrap classes the error as resource exhausted.
func (e *LimitError) Unwrap() error { return cerrdefs.ErrResourceExhausted }

// RetryAfter is how long the client should wait.
func (e *LimitError) RetryAfter() time.Duration { return e.After }

// Rate is a token bucket's refill rate and size; a zero Rate is no limit.
type Rate struct {
	PerSec float64
	Burst  int
}

// LimitsConfig sets the limits every key and every app gets unless an app
// sets its own rate.
type LimitsConfig struct {
	PerKey Rate
	PerApp Rate
	// Concurrency caps a key's runs and invokes in flight; 0 is no cap.
	Concurrency int
}

// Limits holds the token buckets and in-flight counts. It is in memory: a
// restart refills every bucket.
type Limits struct {
	cfg LimitsConfig
	now func() time.Time

	mu       sync.Mutex
	buckets  map[string]*bucket
	inflight map[string]int
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewLimits returns limits with cfg.
func NewLimits(cfg LimitsConfig) *Limits {
	return &Limits{cfg: cfg, now: time.Now, buckets: map[string]*bucket{}, inflight: map[string]int{}}
}

// Admit checks key's rate, then (when app is not empty) the app's rate, at
// appRate when it is set, and then the key's concurrency. On success the
// caller must call the returned release when the request ends.
func (l *Limits) Admit(key, app string, appRate Rate) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if wait := l.peek("key\x00"+key, l.cfg.PerKey, now); wait > 0 {
		return nil, &LimitError{Msg: fmt.Sprintf("rate limit of %g requests/s for this key exceeded", l.cfg.PerKey.PerSec), After: wait}
	}
	if app != "" {
		if appRate.PerSec == 0 {
			appRate = l.cfg.PerApp
		}
		if wait := l.peek("app\x00"+key+"\x00"+app, appRate, now); wait > 0 {
			return nil, &LimitError{Msg: fmt.Sprintf("rate limit of %g requests/s for app %s exceeded", appRate.PerSec, app), After: wait}
		}
	}
	if c := l.cfg.Concurrency; c > 0 && l.inflight[key] >= c {
		return nil, &LimitError{Msg: fmt.Sprintf("this key already has %d requests in flight, its limit", c), After: time.Second}
	}
	l.take("key\x00"+key, l.cfg.PerKey)
	if app != "" {
		l.take("app\x00"+key+"\x00"+app, appRate)
	}
	l.inflight[key]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.inflight[key]--; l.inflight[key] <= 0 {
				delete(l.inflight, key)
			}
		})
	}, nil
}

// peek refills the bucket and returns how long until it holds a token (0 when
// it does now).
func (l *Limits) peek(name string, r Rate, now time.Time) time.Duration {
	if r.PerSec <= 0 {
		return 0
	}
	burst := float64(max(r.Burst, 1))
	b, ok := l.buckets[name]
	if !ok {
		b = &bucket{tokens: burst, at: now}
		l.buckets[name] = b
	}
	b.tokens = math.Min(burst, b.tokens+now.Sub(b.at).Seconds()*r.PerSec)
	b.at = now
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) / r.PerSec * float64(time.Second))
}

func (l *Limits) take(name string, r Rate) {
	if b, ok := l.buckets[name]; ok && r.PerSec > 0 {
		b.tokens--
	}
}
