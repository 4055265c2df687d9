package agent

import (
	"context"
	"errors"
	"time"

	"github.com/bothy/bothy/agent/wire"
)

// CPU reports the CPU time the sandbox's processes have used so far.
func (c *Conn) CPU(ctx context.Context) (time.Duration, error) {
	var u wire.CPUUsage
	if err := c.call(ctx, wire.Request{Op: "cpu"}, &u); err != nil {
		return 0, err
	}
	if u.Error != "" {
		return 0, errors.New(u.Error)
	}
	return time.Duration(u.UsageNs), nil
}

// Stats reports what the sandbox uses.
func (c *Conn) Stats(ctx context.Context) (wire.Stats, error) {
	var st wire.Stats
	if err := c.call(ctx, wire.Request{Op: "stats"}, &st); err != nil {
		return wire.Stats{}, err
	}
	if st.Error != "" {
		return wire.Stats{}, errors.New(st.Error)
	}
	return st, nil
}
