package orchestrator

import (
	"context"
	"fmt"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
)

// LabelKeptAtStop marks the snapshot that keeps a sandbox's files while it
// is stopped on a runtime whose stop loses them (a pod's filesystem goes
// with the pod): its value is the sandbox's ID.
const LabelKeptAtStop = "bothy.kept-at-stop"

// labelTransient marks a snapshot bothy takes for itself and deletes
// after (a diff against a sandbox whose runtime has no commit).
const labelTransient = "bothy.transient"

// filesLoser is a runtime whose stopped containers lose their files.
type filesLoser interface{ StopLosesFiles() bool }

func (o *Orchestrator) stopLosesFiles() bool {
	l, ok := o.rt.(filesLoser)
	return ok && l.StopLosesFiles()
}

// keepFiles runs under sb's write lock, as its stop begins on a runtime
// whose stop loses files: its agent streams what changed in its
// filesystem as a snapshot of its owner's, and the sandbox moves to a new
// container (not started) made from that snapshot, so that its next start
// finds its files. The snapshot an earlier stop kept is deleted. A failure
// leaves the sandbox on its container, running. A container that ended on
// its own took its files with it: nothing is kept.
func (o *Orchestrator) keepFiles(ctx context.Context, sb *Sandbox) error {
	if why := o.exited(ctx, sb.ContainerID); why != "" {
		// Its pod ended on its own: what it held went with it.
		o.log.Warn("the sandbox's files were lost with its container", "sandbox_id", sb.ID, "why", why)
		return nil
	}
	l := o.lookupLive(sb.ID)
	if l == nil || !l.ep.Connected() {
		return cerrdefs.ErrUnavailable.WithMessage(fmt.Sprintf("sandbox %s: its agent does not answer, so its files cannot be kept through a stop", sb.ID))
	}
	wait, cancel := context.WithTimeout(ctx, o.cfg.ReadyTimeout)
	conn, err := l.ep.Conn(wait)
	cancel()
	if err != nil {
		return err
	}
	capture, err := o.agentCapture(ctx, *sb, conn)
	if err != nil {
		return err
	}
	snap, err := o.cfg.Checkpoints.Checkpoint(ctx, sb.Owner, sb.ID, sb.ContainerID, sb.Image, "kept at stop of "+sb.ID,
		map[string]string{LabelKeptAtStop: sb.ID}, capture, captureBound(sb.Spec.DiskMB))
	if err != nil {
		return fmt.Errorf("keep the files of sandbox %s through its stop: %w", sb.ID, err)
	}
	image, err := o.cfg.Checkpoints.SnapshotImage(ctx, sb.Owner, snap)
	if err == nil {
		err = o.moveTo(ctx, sb, image)
	}
	if err != nil {
		o.forgetKept(ctx, sb.Owner, sb.ID, snap)
		return fmt.Errorf("keep the files of sandbox %s through its stop: %w", sb.ID, err)
	}
	return nil
}

// moveTo puts sb on a new container of image, made but not started, and
// removes its old one (which stops it), deleting the snapshot an earlier
// stop kept.
func (o *Orchestrator) moveTo(ctx context.Context, sb *Sandbox, image string) error {
	old, oldImage := sb.ContainerID, sb.Image
	spec, name := o.replacementSpec(sb, image)
	cid, err := o.rt.Create(ctx, spec)
	if err != nil {
		return err
	}
	sb.ContainerID, sb.Image = cid, image
	if err := o.store.update(ctx, sb); err != nil {
		sb.ContainerID, sb.Image = old, oldImage
		_ = o.rt.Remove(context.WithoutCancel(ctx), cid)
		return err
	}
	// From here the row names the new container: reconcile removes the
	// old one if bothy dies before it does.
	if l := o.lookupLive(sb.ID); l != nil {
		l.ep.Drop()
	}
	if err := o.rt.Remove(ctx, old); err != nil && !cerrdefs.IsNotFound(err) {
		o.log.Warn("keep files: remove the old container (reconcile will)", "sandbox_id", sb.ID, "err", err)
	}
	if err := o.rt.Rename(ctx, cid, name); err != nil {
		o.log.Warn("keep files: rename the new container", "sandbox_id", sb.ID, "err", err)
	}
	if prev, ok := strings.CutPrefix(oldImage, keptImagePrefix); ok {
		o.forgetKept(ctx, sb.Owner, sb.ID, prev)
	}
	return nil
}

// keptImagePrefix is the start of a snapshot's image name (snapshot.ImageRef).
const keptImagePrefix = "bothy/snapshot:"

// forgetKept deletes snapshot snap of owner's if it is sandbox id's own, a
// stop of it kept it or bothy took it for it; a snapshot the user took, or
// another sandbox's, is never deleted here. It outlives its caller.
func (o *Orchestrator) forgetKept(ctx context.Context, owner, id, snap string) {
	ctx = context.WithoutCancel(ctx)
	labels, err := o.cfg.Checkpoints.SnapshotLabels(ctx, owner, snap)
	if err != nil || (labels[LabelKeptAtStop] != id && labels[labelTransient] != id) {
		return
	}
	if err := o.cfg.Checkpoints.Delete(ctx, owner, snap); err != nil && !cerrdefs.IsNotFound(err) {
		o.log.Warn("delete the snapshot bothy kept for a sandbox", "snapshot_id", snap, "sandbox_id", id, "err", err)
	}
}
