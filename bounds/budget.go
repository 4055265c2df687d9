package bounds

import (
	"context"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Budget is a number of bytes shared by every request, of which one key may
// hold at most a share at once. A reservation waits its turn while the
// budget (or the key's share) is spent.
type Budget struct {
	size, perKey int64
	all          *semaphore.Weighted
	held         atomic.Int64

	mu   sync.Mutex
	keys map[string]*keyShare
}

// keyShare is one key's part of a budget, kept while the key holds any.
type keyShare struct {
	sem   *semaphore.Weighted
	users int
}

// NewBudget makes a budget of size bytes, of which one key holds at most
// perKey (at most size).
func NewBudget(size, perKey int64) *Budget {
	size = max(size, 1)
	if perKey <= 0 || perKey > size {
		perKey = size
	}
	return &Budget{size: size, perKey: perKey, all: semaphore.NewWeighted(size), keys: map[string]*keyShare{}}
}

// Size is the whole budget, in bytes.
func (b *Budget) Size() int64 { return b.size }

// PerKey is the most one key may hold at once.
func (b *Budget) PerKey() int64 { return b.perKey }

// Held is what is reserved now.
func (b *Budget) Held() int64 { return b.held.Load() }

// Reserve waits until n bytes are free for key, and returns what it got
// (n, cut to the key's share) and the function that gives it back (safe to
// call more than once). It fails only when ctx is done first.
func (b *Budget) Reserve(ctx context.Context, key string, n int64) (int64, func(), error) {
	n = min(n, b.perKey)
	if n <= 0 {
		return 0, func() {}, nil
	}
	ks := b.share(key)
	if err := ks.sem.Acquire(ctx, n); err != nil {
		b.unshare(key)
		return 0, nil, err
	}
	if err := b.all.Acquire(ctx, n); err != nil {
		ks.sem.Release(n)
		b.unshare(key)
		return 0, nil, err
	}
	b.held.Add(n)
	var once sync.Once
	return n, func() {
		once.Do(func() {
			b.held.Add(-n)
			b.all.Release(n)
			ks.sem.Release(n)
			b.unshare(key)
		})
	}, nil
}

// TryReserve is Reserve without waiting: it fails at once (false) when the
// bytes are not free.
func (b *Budget) TryReserve(key string, n int64) (func(), bool) {
	if n <= 0 {
		return func() {}, true
	}
	if n > b.perKey {
		return nil, false
	}
	ks := b.share(key)
	if !ks.sem.TryAcquire(n) {
		b.unshare(key)
		return nil, false
	}
	if !b.all.TryAcquire(n) {
		ks.sem.Release(n)
		b.unshare(key)
		return nil, false
	}
	b.held.Add(n)
	var once sync.Once
	return func() {
		once.Do(func() {
			b.held.Add(-n)
			b.all.Release(n)
			ks.sem.Release(n)
			b.unshare(key)
		})
	}, true
}

func (b *Budget) share(key string) *keyShare {
	b.mu.Lock()
	defer b.mu.Unlock()
	ks := b.keys[key]
	if ks == nil {
		ks = &keyShare{sem: semaphore.NewWeighted(b.perKey)}
		b.keys[key] = ks
	}
	ks.users++
	return ks
}

func (b *Budget) unshare(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ks := b.keys[key]; ks != nil {
		if ks.users--; ks.users == 0 {
			delete(b.keys, key)
		}
	}
}
