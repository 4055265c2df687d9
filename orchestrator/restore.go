package orchestrator

import (
	"context"
	"fmt"

	"github.com/bothy/bothy/runtime"

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

// restore runs under the sandbox's write lock. It is all or nothing: the
// new container is made first, beside the old one; the old one is stopped
// (its files kept) and the row switched to the new one in one update; the
// new one starts; only once its agent answers is the old one removed. A
// failure before that puts the sandbox back on its old container, as it
// was. A bothy killed mid-way leaves a row that names one of the two
// containers, whole: reconcile removes the other (a container of a known
// sandbox that its row does not name) and settles the state.
func (o *Orchestrator) restore(ctx context.Context, sb *Sandbox, image string) error {
	id := sb.ID
	if sb.State == StatePaused {
		if err := o.resume(ctx, sb); err != nil {
			return err
		}
	}
	was := sb.State
	if err := o.transition(ctx, sb, StateStarting, ""); err != nil {
		return err
	}
	old, oldImage := sb.ContainerID, sb.Image
	spec, name := o.replacementSpec(sb, image)
	cid, err := o.rt.Create(ctx, spec)
	if err != nil {
		return o.restoreFailed(ctx, sb, was, err)
	}
	// back puts the sandbox on its old container again.
	back := func(cause error) error {
		bctx := context.WithoutCancel(ctx)
		sb.ContainerID, sb.Image = old, oldImage
		if err := o.store.update(bctx, sb); err != nil {
			o.log.Warn("restore: put the old container back", "sandbox_id", id, "err", err)
		}
		if err := o.rt.Remove(bctx, cid); err != nil && !cerrdefs.IsNotFound(err) {
			o.log.Warn("restore: remove the new container", "sandbox_id", id, "err", err)
		}
		if was == StateRunning && old != "" {
			if l := o.lookupLive(id); l != nil {
				l.ep.Drop()
			}
			if err := o.rt.Start(bctx, old); err != nil {
				return o.restoreFailed(ctx, sb, StateFailed, fmt.Errorf("%w; and the old container did not start again: %v", cause, err))
			}
		}
		return o.restoreFailed(ctx, sb, was, cause)
	}
	if l := o.lookupLive(id); l != nil {
		l.ep.Drop()
	}
	if old != "" {
		if err := o.rt.Stop(ctx, old, o.cfg.StopTimeout); err != nil && !cerrdefs.IsNotFound(err) {
			return back(err)
		}
	}
	sb.ContainerID, sb.Image = cid, image
	if err := o.store.update(ctx, sb); err != nil {
		return back(err)
	}
	l, err := o.endpoint(sb)
	if err != nil {
		return back(err)
	}
	if err := o.rt.Start(ctx, cid); err != nil {
		return back(err)
	}
	if _, err := o.waitAgent(ctx, l); err != nil {
		return back(err)
	}
	if old != "" {
		if err := o.rt.Remove(ctx, old); err != nil && !cerrdefs.IsNotFound(err) {
			o.log.Warn("restore: remove the old container (reconcile will)", "sandbox_id", id, "err", err)
		}
	}
	if err := o.rt.Rename(ctx, cid, name); err != nil {
		o.log.Warn("restore: rename the new container", "sandbox_id", id, "err", err)
	}
	o.log.Info("sandbox restored", "sandbox_id", id, "image", image)
	return o.transition(ctx, sb, StateRunning, "")
}

// replacementSpec is the spec of a container of image to replace sb's,
// made beside it under a name of its own, and the name it takes once the
// old one is gone.
func (o *Orchestrator) replacementSpec(sb *Sandbox, image string) (runtime.Spec, string) {
	next := *sb
	next.Image = image
	spec := o.containerSpec(&next)
	name := spec.Name
	spec.Name = name + "-" + newID("", 4)
	return spec, name
}

// restoreFailed returns the sandbox to state st after a restore failed
// with err, and returns err.
func (o *Orchestrator) restoreFailed(ctx context.Context, sb *Sandbox, st State, err error) error {
	reason := ""
	if st == StateFailed {
		reason = "restore failed: " + err.Error()
	}
	if terr := o.transition(context.WithoutCancel(ctx), sb, st, reason); terr != nil {
		o.log.Warn("restore: settle the state", "sandbox_id", sb.ID, "err", terr)
	}
	return err
}
