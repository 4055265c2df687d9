package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// Start starts owner's stopped (or failed) sandbox and waits for its agent.
// Starting a running sandbox is a no-op.
func (o *Orchestrator) Start(ctx context.Context, owner, id string) (Sandbox, error) {
	return o.lifecycle(ctx, owner, id, false, StateRunning, func(sb *Sandbox) error { return o.start(ctx, sb) })
}

// lifecycle runs op on owner's sandbox under its write lock, so that only one
// lifecycle operation runs on a sandbox at a time. With interrupt, the
// data-plane calls running in it are cancelled first (so that op does not wait
// behind a long command), once the sandbox is known to be owner's. A sandbox
// already in state done is returned as it is.
func (o *Orchestrator) lifecycle(ctx context.Context, owner, id string, interrupt bool, done State, op func(*Sandbox) error) (Sandbox, error) {
	if interrupt {
		if _, err := o.Get(ctx, owner, id); err != nil {
			return Sandbox{}, err
		}
		o.interrupt(id)
	}
	unlock := o.locks.Lock(id)
	defer unlock()
	sb, err := o.Get(ctx, owner, id)
	if err != nil {
		return Sandbox{}, err
	}
	if done != "" && sb.State == done {
		return sb, nil
	}
	if err := op(&sb); err != nil {
		return Sandbox{}, err
	}
	return sb, nil
}

// start runs under id's write lock.
func (o *Orchestrator) start(ctx context.Context, sb *Sandbox) error {
	unlockQuota := o.locks.Lock("quota\x00" + sb.Owner)
	err := o.admit(ctx, sb.Owner, sb.Spec, false)
	if err == nil {
		err = o.transition(ctx, sb, StateStarting, "")
	}
	unlockQuota()
	if err != nil {
		return err
	}
	fail := func(err error) error {
		if terr := o.transition(context.WithoutCancel(ctx), sb, StateFailed, err.Error()); terr != nil {
			o.log.Warn("mark sandbox failed", "sandbox_id", sb.ID, "err", terr)
		}
		return err
	}
	l, err := o.endpoint(sb)
	if err != nil {
		return fail(err)
	}
	if err := o.rt.Start(ctx, sb.ContainerID); err != nil {
		return fail(fmt.Errorf("start sandbox %s: %w", sb.ID, err))
	}
	if _, err := o.waitAgent(ctx, l); err != nil {
		return fail(err)
	}
	l.lastActive.Store(o.now().UnixNano())
	o.log.Info("sandbox started", "sandbox_id", sb.ID)
	return o.transition(ctx, sb, StateRunning, "")
}

// Stop stops owner's running sandbox; its files are kept. Commands running in it
// are killed rather than waited for. Stopping a stopped sandbox is a no-op.
func (o *Orchestrator) Stop(ctx context.Context, owner, id string) (Sandbox, error) {
	return o.lifecycle(ctx, owner, id, true, StateStopped, func(sb *Sandbox) error { return o.stop(ctx, sb, "") })
}

// stop runs under id's write lock; reason is kept in the sandbox's Error field
// (an idle stop says so). A paused sandbox is thawed first, so that its
// processes see the SIGTERM.
func (o *Orchestrator) stop(ctx context.Context, sb *Sandbox, reason string) error {
	if sb.State == StatePaused {
		if err := o.resume(ctx, sb); err != nil {
			return err
		}
	}
	was := sb.State
	if err := o.transition(ctx, sb, StateStopping, ""); err != nil {
		return err
	}
	if l := o.lookupLive(sb.ID); l != nil {
		sb.LastActiveAt = time.Unix(0, l.lastActive.Load())
	}
	if was == StateRunning && o.stopLosesFiles() {
		if err := o.keepFiles(ctx, sb); err != nil && reason == "" {
			// Asked for: refused, and the sandbox runs on.
			if terr := o.transition(context.WithoutCancel(ctx), sb, StateRunning, ""); terr != nil {
				o.log.Warn("put a sandbox back to running", "sandbox_id", sb.ID, "err", terr)
			}
			return err
		} else if err != nil {
			// The reaper's stop goes on: a sandbox whose files cannot be
			// kept (no agent, no snapshot quota left) must not hold its
			// resources forever. Its reason says what was lost.
			o.log.Warn("stopping a sandbox whose files could not be kept", "sandbox_id", sb.ID, "reason", reason, "err", err)
			reason += "; its files could not be kept: " + err.Error()
		}
	}
	if err := o.rt.Stop(ctx, sb.ContainerID, o.cfg.StopTimeout); err != nil && !cerrdefs.IsNotFound(err) {
		_ = o.transition(context.WithoutCancel(ctx), sb, StateFailed, err.Error())
		return fmt.Errorf("stop sandbox %s: %w", sb.ID, err)
	}
	if l := o.lookupLive(sb.ID); l != nil {
		l.ep.Drop()
	}
	o.log.Info("sandbox stopped", "sandbox_id", sb.ID, "reason", reason)
	return o.transition(ctx, sb, StateStopped, reason)
}

// stopExited records sandbox id, whose container cid exited behind
// bothy's back, as stopped for reason, unless it has changed since.
func (o *Orchestrator) stopExited(ctx context.Context, id, cid, reason string) error {
	unlock := o.locks.Lock(id)
	defer unlock()
	sb, err := o.store.get(ctx, id)
	if err != nil || sb.State != StateRunning || sb.ContainerID != cid {
		return err
	}
	return o.stop(ctx, &sb, reason)
}

// Delete removes owner's sandbox, its container and its files, killing the
// commands running in it.
func (o *Orchestrator) Delete(ctx context.Context, owner, id string) error {
	_, err := o.lifecycle(ctx, owner, id, true, "", func(sb *Sandbox) error { return o.delete(ctx, sb, "") })
	return err
}

// delete runs under id's write lock.
func (o *Orchestrator) delete(ctx context.Context, sb *Sandbox, reason string) error {
	if sb.State != StateDeleting {
		if err := o.transition(ctx, sb, StateDeleting, reason); err != nil {
			return err
		}
	}
	o.dropEndpoint(sb.ID)
	if sb.ContainerID != "" {
		if err := o.rt.Remove(ctx, sb.ContainerID); err != nil && !cerrdefs.IsNotFound(err) {
			return fmt.Errorf("delete sandbox %s: %w", sb.ID, err)
		}
	}
	if snap, ok := strings.CutPrefix(sb.Image, keptImagePrefix); ok {
		o.forgetKept(ctx, sb.Owner, sb.ID, snap)
	}
	o.log.Info("sandbox deleted", "sandbox_id", sb.ID, "reason", reason)
	if err := o.transition(ctx, sb, StateDeleted, reason); err != nil {
		return err
	}
	o.deletes.Add(1)
	return nil
}

// Update changes owner's sandbox's labels, idle timeout or TTL.
func (o *Orchestrator) Update(ctx context.Context, owner, id string, opts UpdateOptions) (Sandbox, error) {
	var v invalid
	if opts.Labels != nil {
		checkLabels(&v, *opts.Labels)
	}
	idle, ttl := int64(0), int64(0)
	if opts.IdleTimeout != nil {
		idle = *opts.IdleTimeout
	}
	if opts.TTLSeconds != nil {
		ttl = *opts.TTLSeconds
	}
	checkTimeouts(&v, idle, ttl)
	if opts.IdlePolicy != nil {
		checkIdlePolicy(&v, *opts.IdlePolicy)
	}
	if err := v.err(); err != nil {
		return Sandbox{}, err
	}
	unlock := o.locks.Lock(id)
	defer unlock()
	sb, err := o.Get(ctx, owner, id)
	if err != nil {
		return Sandbox{}, err
	}
	if opts.Labels != nil {
		sb.Labels = *opts.Labels
	}
	if opts.IdleTimeout != nil {
		sb.Spec.IdleTimeout = idle
	}
	if opts.TTLSeconds != nil {
		sb.Spec.TTLSeconds = ttl
	}
	if opts.IdlePolicy != nil {
		sb.Spec.IdlePolicy = *opts.IdlePolicy
	}
	sb.UpdatedAt = o.now()
	if err := o.store.update(ctx, &sb); err != nil {
		return Sandbox{}, err
	}
	return sb, nil
}

// Pause freezes owner's running sandbox: its processes keep their memory but
// get no CPU. Pausing a paused sandbox is a no-op.
func (o *Orchestrator) Pause(ctx context.Context, owner, id string) (Sandbox, error) {
	// Refused before anything is interrupted, where the runtime cannot.
	if p, ok := o.rt.(interface{ CanPause() bool }); ok && !p.CanPause() {
		if _, err := o.Get(ctx, owner, id); err != nil {
			return Sandbox{}, err
		}
		return Sandbox{}, cerrdefs.ErrNotImplemented.WithMessage("this runtime cannot pause a sandbox (a pod's processes cannot be frozen): stop it instead, which keeps its files")
	}
	return o.lifecycle(ctx, owner, id, true, StatePaused, func(sb *Sandbox) error {
		if err := sb.State.check(StatePaused); err != nil {
			return err
		}
		if err := o.rt.Pause(ctx, sb.ContainerID); err != nil {
			return fmt.Errorf("pause sandbox %s: %w", sb.ID, err)
		}
		if err := o.transition(ctx, sb, StatePaused, ""); err != nil {
			_ = o.rt.Unpause(context.WithoutCancel(ctx), sb.ContainerID)
			return err
		}
		o.log.Info("sandbox paused", "sandbox_id", sb.ID)
		return nil
	})
}

// Resume thaws owner's paused sandbox. Resuming a running sandbox is a no-op.
func (o *Orchestrator) Resume(ctx context.Context, owner, id string) (Sandbox, error) {
	return o.lifecycle(ctx, owner, id, false, StateRunning, func(sb *Sandbox) error { return o.resume(ctx, sb) })
}

// resume runs under id's write lock.
func (o *Orchestrator) resume(ctx context.Context, sb *Sandbox) error {
	if sb.State != StatePaused {
		return cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("sandbox %s is %s, not paused", sb.ID, sb.State))
	}
	if err := o.rt.Unpause(ctx, sb.ContainerID); err != nil {
		return fmt.Errorf("resume sandbox %s: %w", sb.ID, err)
	}
	if l := o.lookupLive(sb.ID); l != nil {
		l.lastActive.Store(o.now().UnixNano())
	}
	o.log.Info("sandbox resumed", "sandbox_id", sb.ID)
	return o.transition(ctx, sb, StateRunning, "")
}
