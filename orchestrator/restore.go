package orchestrator

import (
	"context"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
)

// WithSandbox runs fn on owner's sandbox while no lifecycle operation can run
// on it (fn may run beside data-plane calls). It does not wake the sandbox.
func (o *Orchestrator) WithSandbox(ctx context.Context, owner, id string, fn func(Sandbox) error) error {
	unlock := o.locks.RLock(id)
	defer unlock()
	sb, err := o.Get(ctx, owner, id)
	if err != nil {
		return err
	}
	switch sb.State {
	case StateRunning, StatePaused, StateStopped:
	default:
		return cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("sandbox %s is %s", id, sb.State))
	}
	return fn(sb)
}

// Restore rolls owner's sandbox back in place: its container is replaced by
// one made from image (a snapshot's), with the sandbox's own configuration
// and isolation, under the same ID. Commands running in it are killed.
func (o *Orchestrator) Restore(ctx context.Context, owner, id, image string) (Sandbox, error) {
	return o.lifecycle(ctx, owner, id, true, "", func(sb *Sandbox) error { return o.restore(ctx, sb, image) })
}

// restore runs under the sandbox's write lock.
func (o *Orchestrator) restore(ctx context.Context, sb *Sandbox, image string) error {
	id := sb.ID
	if sb.State == StatePaused {
		if err := o.resume(ctx, sb); err != nil {
			return err
		}
	}
	if err := o.transition(ctx, sb, StateStarting, ""); err != nil {
		return err
	}
	fail := func(err error) error {
		_ = o.transition(context.WithoutCancel(ctx), sb, StateFailed, "restore failed: "+err.Error())
		return err
	}
	if l := o.lookupLive(id); l != nil {
		l.ep.Drop()
	}
	if sb.ContainerID != "" {
		if err := o.rt.Remove(ctx, sb.ContainerID); err != nil && !cerrdefs.IsNotFound(err) {
			return fail(err)
		}
	}
	sb.Image = image
	cid, err := o.rt.Create(ctx, o.containerSpec(sb))
	if err != nil {
		return fail(err)
	}
	sb.ContainerID = cid
	if err := o.store.update(ctx, sb); err != nil {
		return fail(err)
	}
	l, err := o.endpoint(sb)
	if err != nil {
		return fail(err)
	}
	if err := o.rt.Start(ctx, cid); err != nil {
		return fail(err)
	}
	if _, err := o.waitAgent(ctx, l); err != nil {
		return fail(err)
	}
	o.log.Info("sandbox restored", "sandbox_id", id, "image", image)
	return o.transition(ctx, sb, StateRunning, "")
}
