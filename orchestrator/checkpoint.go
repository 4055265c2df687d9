package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/internal/errclass"
)

// Checkpoints keeps sandboxes' filesystems as snapshots (package snapshot
// serves it). The orchestrator composes it with its sandboxes for the
// operations that span both, so that the front doors only translate:
// checkpoint, fork, create from a snapshot and restore in place.
type Checkpoints interface {
	// Checkpoint keeps the filesystem of container, sandbox id's on image,
	// as a snapshot of owner's, and answers the snapshot's ID. With capture
	// set, the sandbox's agent streams its changes as a layer (of at most
	// maxBytes); without, the engine commits the container.
	Checkpoint(ctx context.Context, owner, id, container, image, name string, labels map[string]string,
		capture func(ctx context.Context, imagePaths []string, start func(size int64) (io.Writer, error)) error, maxBytes int64) (string, error)
	// SnapshotImage is the image a sandbox made from owner's snapshot runs;
	// another owner's is not found.
	SnapshotImage(ctx context.Context, owner, snapshot string) (string, error)
	// DiffContainer calls fn, in path order, for each path that differs
	// between owner's snapshot and container's filesystem now.
	DiffContainer(ctx context.Context, owner, snapshot, container string, fn func(path, kind, typ string, size int64)) error
	// DiffSnapshots calls fn, in path order, for each path that differs
	// between owner's snapshots a and b.
	DiffSnapshots(ctx context.Context, owner, a, b string, fn func(path, kind, typ string, size int64)) error
	// SnapshotLabels are the labels of owner's snapshot.
	SnapshotLabels(ctx context.Context, owner, snapshot string) (map[string]string, error)
	// Delete deletes owner's snapshot.
	Delete(ctx context.Context, owner, snapshot string) error
}

// Change is a path that differs between a snapshot and a sandbox: added,
// modified or deleted, a file, dir, symlink or other (what it is now; what
// it was, for a deletion).
type Change struct {
	Path, Kind, Type string
	Size             int64
}

// MaxFork bounds one fork's count.
const MaxFork = 16

// noCheckpoints are the snapshots of an orchestrator made without them:
// every operation on them is unavailable.
type noCheckpoints struct{}

var errNoCheckpoints = cerrdefs.ErrUnavailable.WithMessage("snapshots are not served here")

func (noCheckpoints) Checkpoint(context.Context, string, string, string, string, string, map[string]string,
	func(context.Context, []string, func(int64) (io.Writer, error)) error, int64) (string, error) {
	return "", errNoCheckpoints
}

func (noCheckpoints) SnapshotImage(context.Context, string, string) (string, error) {
	return "", errNoCheckpoints
}

func (noCheckpoints) DiffContainer(context.Context, string, string, string, func(string, string, string, int64)) error {
	return errNoCheckpoints
}

func (noCheckpoints) DiffSnapshots(context.Context, string, string, string, func(string, string, string, int64)) error {
	return errNoCheckpoints
}

func (noCheckpoints) SnapshotLabels(context.Context, string, string) (map[string]string, error) {
	return nil, errNoCheckpoints
}

func (noCheckpoints) Delete(context.Context, string, string) error { return errNoCheckpoints }

// Checkpoint keeps owner's sandbox id's filesystem as it is now (running,
// paused or stopped) as a snapshot, and answers the snapshot's ID.
func (o *Orchestrator) Checkpoint(ctx context.Context, owner, id, name string, labels map[string]string) (string, error) {
	_, snap, err := o.checkpoint(ctx, owner, id, name, labels)
	return snap, err
}

// Ways to take a checkpoint (Config.Checkpoint).
const (
	// CheckpointCommit: the engine commits the container, paused.
	CheckpointCommit = "commit"
	// CheckpointAgent: the sandbox's agent streams what changed as a layer,
	// while the sandbox runs (a stopped or paused sandbox is committed).
	CheckpointAgent = "agent"
)

// checkpoint keeps sandbox id's filesystem as a snapshot, as the
// configuration says, and answers the sandbox as it was and the snapshot.
func (o *Orchestrator) checkpoint(ctx context.Context, owner, id, name string, labels map[string]string) (Sandbox, string, error) {
	var src Sandbox
	var snap string
	if o.cfg.Checkpoint == CheckpointAgent {
		// A runtime that commits nothing has the agent capture a stopped
		// sandbox too, woken for it (a data-plane call starts it).
		if sb, err := o.Get(ctx, owner, id); err == nil && (sb.State == StateRunning || o.stopLosesFiles()) {
			err := o.attach(ctx, owner, id, func(ctx context.Context, sb Sandbox, conn *agent.Conn) error {
				capture, err := o.agentCapture(ctx, sb, conn)
				if err != nil {
					return err
				}
				src = sb
				snap, err = o.cfg.Checkpoints.Checkpoint(ctx, owner, sb.ID, sb.ContainerID, sb.Image, name, labels,
					capture, captureBound(sb.Spec.DiskMB))
				return err
			})
			return src, snap, err
		}
	}
	err := o.WithSandbox(ctx, owner, id, func(sb Sandbox) error {
		src = sb
		var err error
		snap, err = o.cfg.Checkpoints.Checkpoint(ctx, owner, sb.ID, sb.ContainerID, sb.Image, name, labels, nil, 0)
		return err
	})
	return src, snap, err
}

// agentCapture is the capture of sb's filesystem through its agent on
// conn: what changed since its container was made.
func (o *Orchestrator) agentCapture(ctx context.Context, sb Sandbox, conn *agent.Conn) (func(context.Context, []string, func(int64) (io.Writer, error)) error, error) {
	c, err := o.rt.Inspect(ctx, sb.ContainerID)
	if err != nil {
		return nil, err
	}
	// A second of margin: a file's ctime comes from a coarser clock than
	// the container's creation time. What changed in it is captured again,
	// never missed.
	since := c.Created.Add(-time.Second)
	return func(ctx context.Context, paths []string, start func(int64) (io.Writer, error)) error {
		err := conn.Capture(ctx, since, paths, start)
		if errors.Is(err, agent.ErrTooLarge) {
			return errclass.New(err.Error(), cerrdefs.ErrResourceExhausted, err)
		}
		return err
	}, nil
}

// captureBound bounds the layer an agent streams for a sandbox of diskMB:
// twice what the sandbox may write (a tar's headers take room a small
// file's block does not) and some; 1 TiB without a limit.
func captureBound(diskMB int64) int64 {
	if diskMB <= 0 {
		return 1 << 40
	}
	return 2*diskMB<<20 + 64<<20
}

// DiffSandbox lists what changed from owner's snapshot to owner's sandbox
// id's filesystem as it is now (running, paused or stopped).
func (o *Orchestrator) DiffSandbox(ctx context.Context, owner, snapshot, id string) ([]Change, error) {
	var out []Change
	add := func(path, kind, typ string, size int64) {
		out = append(out, Change{Path: path, Kind: kind, Type: typ, Size: size})
	}
	if o.stopLosesFiles() {
		// No engine commits these containers: the sandbox's agent
		// captures it as a snapshot of a moment, deleted after.
		now, err := o.Checkpoint(ctx, owner, id, "diff of "+id, map[string]string{labelTransient: id})
		if err != nil {
			return nil, err
		}
		defer o.forgetKept(ctx, owner, id, now)
		return out, o.cfg.Checkpoints.DiffSnapshots(ctx, owner, snapshot, now, add)
	}
	err := o.WithSandbox(ctx, owner, id, func(sb Sandbox) error {
		return o.cfg.Checkpoints.DiffContainer(ctx, owner, snapshot, sb.ContainerID, func(path, kind, typ string, size int64) {
			out = append(out, Change{Path: path, Kind: kind, Type: typ, Size: size})
		})
	})
	return out, err
}

// RestoreSnapshot rolls owner's sandbox id back to owner's snapshot, in
// place (Restore).
func (o *Orchestrator) RestoreSnapshot(ctx context.Context, owner, id, snapshot string) (Sandbox, error) {
	image, err := o.cfg.Checkpoints.SnapshotImage(ctx, owner, snapshot)
	if err != nil {
		return Sandbox{}, err
	}
	return o.Restore(ctx, owner, id, image)
}

// Fork makes count new sandboxes from owner's sandbox id's filesystem as it
// is now: one checkpoint (its ID is answered), then count creates from it,
// two at a time (a container start is what each costs, and two cores start
// two at once). Each new sandbox has the source's limits, environment,
// user, working directory and lifetime settings, and labels. All or
// nothing: when one fails, those made are deleted.
func (o *Orchestrator) Fork(ctx context.Context, owner, id string, count int, labels map[string]string) (string, []Sandbox, error) {
	if count < 1 || count > MaxFork {
		return "", nil, cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("count: want 1 to %d, got %d", MaxFork, count))
	}
	src, snap, err := o.checkpoint(ctx, owner, id, "fork of "+id, map[string]string{"bothy.fork_of": id})
	if err != nil {
		return "", nil, err
	}
	idle, ttl := src.Spec.IdleTimeout, src.Spec.TTLSeconds
	opts := CreateOptions{
		Snapshot: snap, Env: src.Spec.Env, CPUs: src.Spec.CPUs, MemoryMB: src.Spec.MemoryMB, Pids: src.Spec.Pids,
		DiskMB: src.Spec.DiskMB, Network: src.Spec.Network, IdleTimeout: &idle, IdlePolicy: src.Spec.IdlePolicy,
		TTLSeconds: &ttl, User: src.Spec.User, Workdir: src.Spec.Workdir, Labels: labels,
	}
	made := make([]Sandbox, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	slots := make(chan struct{}, 2)
	for i := range count {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			made[i], _, errs[i] = o.Create(ctx, owner, opts)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err == nil {
			continue
		}
		for i, sb := range made {
			if errs[i] == nil {
				_ = o.Delete(context.WithoutCancel(ctx), owner, sb.ID)
			}
		}
		return "", nil, err
	}
	return snap, made, nil
}
