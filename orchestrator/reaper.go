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
	case sb.State == StateRunning && sb.Spec.IdleTimeout > 0 && l.inflight.Load() == 0 &&
		now.Sub(time.Unix(0, l.lastActive.Load())) > time.Duration(sb.Spec.IdleTimeout)*time.Second:
		return o.stop(ctx, &sb, "idle timeout")
	case l.lastActive.Load() > sb.LastActiveAt.UnixNano()+int64(time.Second):
		sb.LastActiveAt = time.Unix(0, l.lastActive.Load())
		return o.store.update(ctx, &sb)
	}
	return nil
}
