package server

import (
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// exitStatus is what wait4 reported for one process.
type exitStatus struct {
	status syscall.WaitStatus
	rusage syscall.Rusage
}

// reaper hands the exit status of the processes a Server started to whoever
// registered them. As PID 1, it waits for every child, as PID 1 must: it
// reaps zombies re-parented to it, with wait4(-1), so nothing else in the
// process may call Wait on a child. Anywhere else (a test's process, whose
// other code runs children of its own), it waits only for the processes
// registered with it. A process has one reaper (processReaper), which runs
// until the process ends.
type reaper struct {
	mu      sync.Mutex
	waiters map[int]chan exitStatus
	sig     chan os.Signal
	all     bool // reap every child: the agent is PID 1
}

var (
	reaperOnce sync.Once
	theReaper  *reaper
)

// processReaper is the process's one reaper, started on first use: every
// Server in a process (one in an agent; one per fake container in tests)
// shares it, as a second one reaping every child would take the first's.
func processReaper() *reaper {
	reaperOnce.Do(func() {
		theReaper = &reaper{waiters: make(map[int]chan exitStatus), sig: make(chan os.Signal, 1), all: os.Getpid() == 1}
		signal.Notify(theReaper.sig, syscall.SIGCHLD)
		go theReaper.loop()
	})
	return theReaper
}

// start runs startFn (which forks a child) with the reaper's lock held, so the
// child's exit cannot be reaped before its waiter is registered.
func (r *reaper) start(startFn func() (*os.Process, error)) (*os.Process, <-chan exitStatus, error) {
	if r == nil {
		return nil, nil, errors.New("the agent is shutting down")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := startFn()
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan exitStatus, 1)
	r.waiters[p.Pid] = ch
	return p, ch, nil
}

func (r *reaper) loop() {
	for range r.sig {
		r.reapAll()
	}
}

func (r *reaper) reapAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.all {
		for pid, ch := range r.waiters {
			var st exitStatus
			got, err := syscall.Wait4(pid, &st.status, syscall.WNOHANG, &st.rusage)
			for err == syscall.EINTR {
				got, err = syscall.Wait4(pid, &st.status, syscall.WNOHANG, &st.rusage)
			}
			if got == pid {
				delete(r.waiters, pid)
				ch <- st
			}
		}
		return
	}
	for {
		var st exitStatus
		pid, err := syscall.Wait4(-1, &st.status, syscall.WNOHANG, &st.rusage)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
		if ch, ok := r.waiters[pid]; ok {
			delete(r.waiters, pid)
			ch <- st
		}
	}
}
