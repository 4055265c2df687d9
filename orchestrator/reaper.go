package orchestrator

import (
	"context"
	"time"
)

// reap deletes sandboxes past their TTL, stops running ones idle past their idle
// timeout (never one with a call in flight), and saves last-activity times. Each
// decision is taken again under the sandbox's lock, on a fresh row; a busy
// sandbox is left for the next round.
func (o *Orchestrator) reap(ctx context.Context) {
	rows, err := o.store.all(ctx)
	if err != nil {
		o.log.Warn("reaper", "err", err)
		return
	}
	for _, row := range rows {
		unlock, ok := o.locks.TryLock(row.ID)
		if !ok {
			continue
		}
		if err := o.reapOne(ctx, row.ID); err != nil {
			o.log.Warn("reaper", "sandbox_id", row.ID, "err", err)
		}
		unlock()
	}
}

// reapOne runs under id's write lock.
func (o *Orchestrator) reapOne(ctx context.Context, id string) error {
	sb, err := o.store.get(ctx, id)
	if err != nil {
		return nil // deleted meanwhile
	}
	now := o.now()
	l := o.lookupLive(id)
	switch {
	case !sb.ExpiresAt().IsZero() && now.After(sb.ExpiresAt()):
		return o.delete(ctx, &sb, "its TTL expired")
	case l == nil:
		return nil
	case sb.State == StateRunning && !l.ep.Connected():
		// Its agent is away: when its container exited behind bothy's
		// back, the sandbox is stopped, and says why.
		if reason := o.exited(ctx, sb.ContainerID); reason != "" {
			return o.stop(ctx, &sb, reason)
		}
	}
	idlePast := func() bool {
		return now.Sub(time.Unix(0, l.lastActive.Load())) > time.Duration(sb.Spec.IdleTimeout)*time.Second
	}
	if sb.State == StateRunning && sb.Spec.IdleTimeout > 0 && sb.Spec.IdlePolicy != IdleAPI {
		switch o.sampleCPU(ctx, l) {
		case cpuBusy:
			l.active(now, "processes using CPU")
		case cpuUnknown:
			if idlePast() {
				return nil // no baseline yet: decide at the next round
			}
		}
	}
	switch {
	case sb.State == StateRunning && sb.Spec.IdleTimeout > 0 && l.inflight.Load() == 0 && idlePast():
		return o.stop(ctx, &sb, "idle timeout")
	case l.lastActive.Load() > sb.LastActiveAt.UnixNano()+int64(time.Second):
		sb.LastActiveAt = time.Unix(0, l.lastActive.Load())
		return o.store.update(ctx, &sb)
	}
	return nil
}

// What a CPU sample says of a sandbox's processes.
const (
	cpuUnknown = iota // no earlier sample to compare with, or no answer
	cpuIdle
	cpuBusy
)

// busyShare and busyMin are how much CPU time, between two samples, makes
// a sandbox's processes busy: 2 % of the time between them, and at least
// 10 ms (more than the agent's own work in that time, which it leaves out).
const (
	busyShare = 0.02
	busyMin   = 10 * time.Millisecond
	// cpuProbe bounds a sample.
	cpuProbe = 2 * time.Second
)

// sampleCPU asks the agent for its processes' CPU time and compares it
// with the last sample.
func (o *Orchestrator) sampleCPU(ctx context.Context, l *live) int {
	ctx, cancel := context.WithTimeout(ctx, cpuProbe)
	defer cancel()
	conn, err := l.ep.Conn(ctx)
	if err != nil {
		return cpuUnknown
	}
	used, err := conn.CPU(ctx)
	if err != nil {
		return cpuUnknown
	}
	at := time.Now()
	prev, prevAt := l.cpu, l.cpuAt
	l.cpu, l.cpuAt = used, at
	if prevAt.IsZero() {
		return cpuUnknown
	}
	if used-prev >= max(busyMin, time.Duration(float64(at.Sub(prevAt))*busyShare)) {
		return cpuBusy
	}
	return cpuIdle
}
