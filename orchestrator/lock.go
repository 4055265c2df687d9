package orchestrator

import "sync"

// keyedLock is a read-write lock per key. Lifecycle operations take a key's write
// lock, so only one runs per sandbox; execs take its read lock, so they run side
// by side but never during a stop or a delete. Entries live only while held.
type keyedLock struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	rw   sync.RWMutex
	refs int
}

func newKeyedLock() *keyedLock { return &keyedLock{m: map[string]*keyedEntry{}} }

func (k *keyedLock) acquire(key string) *keyedEntry {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.m[key]
	if !ok {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	return e
}

func (k *keyedLock) release(key string, e *keyedEntry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(k.m, key)
	}
}

// Lock takes key's write lock and returns its unlock.
func (k *keyedLock) Lock(key string) func() {
	e := k.acquire(key)
	e.rw.Lock()
	return func() { e.rw.Unlock(); k.release(key, e) }
}

// RLock takes key's read lock and returns its unlock.
func (k *keyedLock) RLock(key string) func() {
	e := k.acquire(key)
	e.rw.RLock()
	return func() { e.rw.RUnlock(); k.release(key, e) }
}

// TryLock takes key's write lock only if it is free.
func (k *keyedLock) TryLock(key string) (func(), bool) {
	e := k.acquire(key)
	if !e.rw.TryLock() {
		k.release(key, e)
		return nil, false
	}
	return func() { e.rw.Unlock(); k.release(key, e) }, true
}
