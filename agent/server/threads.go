package server

import (
	"runtime"
	"sync"
)

// ReserveThreads makes the Go runtime start n OS threads now and keep them
// idle for later. A sandbox's processes may take every pid its limit
// allows (a fork bomb does); creating a thread then fails, and a Go
// program that needs one more (for a blocking system call) dies of it.
// Threads made ahead are reused instead.
func ReserveThreads(n int) {
	var locked, done sync.WaitGroup
	release := make(chan struct{})
	for range n {
		locked.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			// While locked and parked, each holds a thread of its own.
			runtime.LockOSThread()
			locked.Done()
			<-release
			// Unlocked before the goroutine ends, the thread is kept.
			runtime.UnlockOSThread()
		}()
	}
	locked.Wait()
	close(release)
	done.Wait()
}
