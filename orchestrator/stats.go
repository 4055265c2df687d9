package orchestrator

import (
	"context"
	"time"

	"github.com/sandboxd/sandboxd/agent"
)

// Stats is what a sandbox uses, from its cgroup.
type Stats struct {
	CPUTime                     time.Duration
	MemUsed, MemCache, MemLimit int64
}

// Stats reads what owner's sandbox id uses now (waking it, as any data-plane
// call does).
func (o *Orchestrator) Stats(ctx context.Context, owner, id string) (Stats, error) {
	var st Stats
	err := o.Attach(ctx, owner, id, func(ctx context.Context, _ Sandbox, conn *agent.Conn) error {
		s, err := conn.Stats(ctx)
		st = Stats{CPUTime: time.Duration(s.CPUNs), MemUsed: s.MemUsed, MemCache: s.MemCache, MemLimit: s.MemLimit}
		return err
	})
	return st, err
}
