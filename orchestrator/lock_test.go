package orchestrator

import (
	"sync"
	"testing"
)

func TestKeyedLock(t *testing.T) {
	k := newKeyedLock()
	unlock := k.Lock("a")
	if _, ok := k.TryLock("a"); ok {
		t.Fatal("TryLock took a held lock")
	}
	u2, ok := k.TryLock("b")
	if !ok {
		t.Fatal("TryLock refused a free key")
	}
	u2()
	unlock()
	// Readers share; a writer waits for them.
	r1 := k.RLock("a")
	r2 := k.RLock("a")
	if _, ok := k.TryLock("a"); ok {
		t.Fatal("writer got in beside readers")
	}
	r1()
	r2()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); k.Lock("c")() }()
	}
	wg.Wait()
	if len(k.m) != 0 {
		t.Fatalf("entries leaked: %d", len(k.m))
	}
}
