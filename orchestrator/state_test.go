package orchestrator

import (
	"testing"

	cerrdefs "github.com/containerd/errdefs"
)

func TestStateTransitions(t *testing.T) {
	tests := []struct {
		from, to State
		ok       bool
	}{
		{StateCreating, StateRunning, true},
		{StateRunning, StateStopping, true},
		{StateStopping, StateStopped, true},
		{StateStopped, StateStarting, true},
		{StateStarting, StateRunning, true},
		{StateRunning, StateDeleting, true},
		{StateDeleting, StateDeleted, true},
		{StateFailed, StateDeleting, true},
		{StateStopped, StateStopping, false},
		{StateDeleted, StateRunning, false},
		{StateDeleting, StateRunning, false},
		{StateCreating, StateStopped, false},
	}
	for _, tc := range tests {
		err := tc.from.check(tc.to)
		if (err == nil) != tc.ok {
			t.Errorf("%s -> %s: err=%v, want ok=%v", tc.from, tc.to, err, tc.ok)
		}
		if err != nil && !cerrdefs.IsConflict(err) {
			t.Errorf("%s -> %s: error %v is not a conflict", tc.from, tc.to, err)
		}
	}
	if State("bogus").Valid() || !StateStopped.Valid() {
		t.Error("Valid is wrong")
	}
}
