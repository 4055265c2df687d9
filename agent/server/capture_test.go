package server

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/bothy/bothy/agent"
)

// TestCaptureListsWithinItsBudget: a capture whose changed paths would
// take more of the agent's memory than its share to list is refused with
// its class, before a byte of the layer is sent.
func TestCaptureListsWithinItsBudget(t *testing.T) {
	c, srv := pairServer(t)
	srv.listBudget = 8 << 10
	started := false
	// Since the epoch, every path of this host is a change.
	err := c.Capture(context.Background(), time.Unix(0, 0), nil, func(int64) (io.Writer, error) {
		started = true
		return io.Discard, nil
	})
	if !errors.Is(err, agent.ErrTooLarge) || started {
		t.Fatalf("capture past the budget: %v (started: %v)", err, started)
	}
	t.Log(err)
}
