package orchestrator

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// Reconcile brings the store and the engine into agreement. Docker is the truth
// for what exists:
//   - a container with this instance's labels and no row is an orphan, removed
//     once older than the grace period;
//   - a container of a sandbox that has a row, but not the one the row names,
//     is what an interrupted restore left (the new container not yet
//     recorded, or the old one not yet removed), removed at once;
//   - a row whose operation was interrupted (creating, deleting) is finished off;
//   - a row whose container is gone fails; one whose container runs is adopted
//     (its agent socket listened on); one whose container exited is stopped.
//
// Containers without this instance's labels are never touched. Rows with an
// operation in progress are skipped.
func (o *Orchestrator) Reconcile(ctx context.Context) error {
	// The rows first: a row that changes after it is read is read again
	// under its sandbox's lock (reconcileOne), and a container made after
	// the rows were read is younger than the orphans' grace period.
	rows, err := o.store.all(ctx)
	if err != nil {
		return err
	}
	containers, err := o.rt.List(ctx, map[string]string{
		runtime.LabelInstance: o.cfg.Instance,
		runtime.LabelKind:     runtime.KindSandbox,
	})
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(rows))
	for _, sb := range rows {
		known[sb.ID] = true
	}
	byID := make(map[string][]*runtime.Container, len(containers))
	for i := range containers {
		c := &containers[i]
		id := c.Labels[runtime.LabelID]
		if known[id] {
			byID[id] = append(byID[id], c)
			continue
		}
		if age := o.now().Sub(c.Created); age < o.cfg.OrphanGrace {
			continue
		}
		if err := o.rt.Remove(ctx, c.ID); err != nil && !cerrdefs.IsNotFound(err) {
			o.log.Warn("remove orphan container", "container", c.ID, "err", err)
			continue
		}
		o.log.Info("removed orphan container", "container", c.ID, "sandbox_id", id)
	}
	for _, sb := range rows {
		if err := o.reconcileOne(ctx, sb, byID[sb.ID]); err != nil {
			o.log.Warn("reconcile sandbox", "sandbox_id", sb.ID, "err", err)
		}
	}
	return nil
}

// reconcileOne settles one sandbox, read as row and then listed with its
// containers cs, unless an operation holds it. Both were read before its
// lock: an operation that ended meanwhile (a start, a restore, a stop that
// moved it to another container) changed its row, which is read again under
// the lock; then its containers are listed again, so that nothing is decided
// on what was true before.
func (o *Orchestrator) reconcileOne(ctx context.Context, row Sandbox, cs []*runtime.Container) error {
	unlock, ok := o.locks.TryLock(row.ID)
	if !ok {
		return nil
	}
	defer unlock()
	sb, err := o.store.get(ctx, row.ID)
	if cerrdefs.IsNotFound(err) {
		return nil // deleted meanwhile
	}
	if err != nil {
		return err
	}
	if sb.ContainerID != row.ContainerID || sb.State != row.State || !sb.UpdatedAt.Equal(row.UpdatedAt) {
		fresh, err := o.rt.List(ctx, map[string]string{
			runtime.LabelInstance: o.cfg.Instance,
			runtime.LabelKind:     runtime.KindSandbox,
			runtime.LabelID:       sb.ID,
		})
		if err != nil {
			return err
		}
		cs = cs[:0:0]
		for i := range fresh {
			cs = append(cs, &fresh[i])
		}
	}
	err = o.settle(ctx, &sb, o.current(ctx, &sb, cs))
	if err == nil && sb.Owner == poolOwner && sb.State != StateRunning {
		// A pooled sandbox that stopped or failed is of no use.
		o.discardPooled(ctx, &sb, "a pooled sandbox that was no longer running")
	}
	return err
}

// current is the container of sb's row among cs (the containers labelled
// with its ID), or the only one when the row names none; the others are
// removed. It runs under the sandbox's lock: no restore is under way.
func (o *Orchestrator) current(ctx context.Context, sb *Sandbox, cs []*runtime.Container) *runtime.Container {
	var cur *runtime.Container
	for _, c := range cs {
		if c.ID == sb.ContainerID || sb.ContainerID == "" && len(cs) == 1 {
			cur = c
			continue
		}
		if err := o.rt.Remove(ctx, c.ID); err != nil && !cerrdefs.IsNotFound(err) {
			o.log.Warn("remove a container of a sandbox that its row does not name", "container", c.ID, "sandbox_id", sb.ID, "err", err)
			continue
		}
		o.log.Info("removed a container of a sandbox that its row does not name", "container", c.ID, "sandbox_id", sb.ID)
	}
	return cur
}

// settle reconciles one row with its container (nil when there is none).
func (o *Orchestrator) settle(ctx context.Context, sb *Sandbox, c *runtime.Container) error {
	if sb.ContainerID == "" && c != nil {
		// Made, but bothy died before it wrote the container's ID down.
		sb.ContainerID = c.ID
	}
	switch sb.State {
	case StateCreating:
		return o.delete(ctx, sb, "create was interrupted")
	case StateDeleting:
		return o.delete(ctx, sb, "delete was interrupted")
	}
	if c == nil {
		if sb.State == StateFailed {
			return nil
		}
		o.dropEndpoint(sb.ID)
		return o.transition(ctx, sb, StateFailed, "its container disappeared")
	}
	if _, err := o.endpoint(sb); err != nil {
		return err
	}
	switch {
	case c.State == runtime.StatePaused && sb.State != StatePaused:
		// Paused, but not by a pause of ours: an operation that pauses (a
		// checkpoint) was interrupted. Thaw it.
		if err := o.rt.Unpause(ctx, sb.ContainerID); err != nil {
			return err
		}
		if sb.State != StateRunning && sb.State != StateFailed {
			return o.transition(ctx, sb, StateRunning, "")
		}
		return nil
	case c.State == runtime.StatePaused:
		return nil
	case c.State == runtime.StateRunning && sb.State == StatePaused:
		return o.transition(ctx, sb, StateRunning, "")
	case c.State == runtime.StateRunning && sb.State != StateRunning && sb.State != StateFailed:
		return o.transition(ctx, sb, StateRunning, "")
	case c.State != runtime.StateRunning && sb.State != StateStopped && sb.State != StateFailed:
		reason := fmt.Sprintf("its container exited with code %d", c.ExitCode)
		if c.OOMKilled {
			reason = "its container ran out of memory"
		}
		return o.transition(ctx, sb, StateStopped, reason)
	}
	return nil
}
