package orchestrator

import (
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// State is where a sandbox is in its life. It changes only through
// Orchestrator.transition, which checks the move against this diagram:
//
//	creating ──► running ◄──► paused                (pause, resume)
//	                │  ▲
//	                ▼  │ (reconcile)
//	            stopping ──► stopped ──► starting ──► running
//	                                     ▲                     (start, or any
//	            running ─────────────────┘                      data-plane call;
//	                                                            restore in place)
//	any live state ──► failed (an operation failed, the container was lost);
//	failed ──► starting retries
//	any state but deleted ──► deleting ──► deleted (the row is removed)
//
// creating, stopping, starting and deleting are held only while the operation
// that set them runs, under the sandbox's lock; a row found in one of them with no
// operation running was interrupted (bothy died) and reconcile settles it.
type State string

// The states.
const (
	StateCreating State = "creating"
	StateRunning  State = "running"
	StateStopping State = "stopping"
	StateStopped  State = "stopped"
	StatePaused   State = "paused"
	StateStarting State = "starting"
	StateFailed   State = "failed"
	StateDeleting State = "deleting"
	StateDeleted  State = "deleted"
)

var transitions = map[State][]State{
	StateCreating: {StateRunning, StateFailed, StateDeleting},
	StateRunning:  {StateStopping, StateDeleting, StateFailed, StateStopped, StatePaused, StateStarting},
	StatePaused:   {StateRunning, StateDeleting, StateFailed, StateStopped},
	StateStopping: {StateStopped, StateFailed, StateRunning},
	StateStopped:  {StateStarting, StateDeleting, StateRunning, StateFailed},
	StateStarting: {StateRunning, StateFailed, StateStopped},
	StateFailed:   {StateStarting, StateDeleting, StateRunning, StateStopped, StatePaused},
	StateDeleting: {StateDeleted},
}

// Valid reports whether s is a state a caller may name (in a filter, say).
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok || s == StateDeleted
}

// check reports whether a sandbox in state s may move to next. A refusal is a
// conflict: the sandbox is in the wrong state for what was asked.
func (s State) check(next State) error {
	for _, t := range transitions[s] {
		if t == next {
			return nil
		}
	}
	return cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("sandbox is %s, cannot become %s", s, next))
}
