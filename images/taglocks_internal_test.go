package images

import (
	"sync"
	"testing"
)

// TestTagLocks: the uses of one remote name take turns, those of others
// do not wait for them, and nothing stays behind once all are done.
func TestTagLocks(t *testing.T) {
	var l tagLocks
	var wg sync.WaitGroup
	inside := map[string]int{}
	var mu sync.Mutex
	for i := range 200 {
		name := []string{"r/a:1", "r/b:1"}[i%2]
		wg.Go(func() {
			defer l.lock(name)()
			mu.Lock()
			inside[name]++
			n := inside[name]
			mu.Unlock()
			if n != 1 {
				t.Errorf("%d uses of %s at once", n, name)
			}
			mu.Lock()
			inside[name]--
			mu.Unlock()
		})
	}
	// One name held does not hold another.
	release := l.lock("r/a:1")
	l.lock("r/c:1")()
	release()
	wg.Wait()
	if len(l.m) != 0 {
		t.Fatalf("locks left: %v", l.m)
	}
}
