package orchestrator

import (
	"context"
	"time"

	"github.com/bothy/bothy/agent"
)

// CountByState counts the sandboxes of every owner, by state (not the warm
// pools' sandboxes, which no one owns yet).
func (o *Orchestrator) CountByState(ctx context.Context) (map[State]int, error) {
	rows, err := o.store.db.QueryContext(ctx, `SELECT state, COUNT(*) FROM sandboxes WHERE owner != '' GROUP BY state`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[State]int{}
	for rows.Next() {
		var st State
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, err
		}
		out[st] = n
	}
	return out, rows.Err()
}

// AgentsConnected counts the sandboxes whose agent is connected now.
func (o *Orchestrator) AgentsConnected() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, l := range o.live {
		if l.ep.Connected() {
			n++
		}
	}
	return n
}

// Counters are the orchestrator's running totals since it started.
type Counters struct {
	Creates, Deletes int64
	// AgentConnects counts agent connections accepted, first ones and
	// reconnections (of the whole process).
	AgentConnects int64
}

// Counters reads the running totals.
func (o *Orchestrator) Counters() Counters {
	return Counters{Creates: o.creates.Load(), Deletes: o.deletes.Load(), AgentConnects: agent.Handshakes()}
}

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
