package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

var _ Checkpoints = (*fakeCheckpoints)(nil)

// fakeCheckpoints keeps snapshots as names for fakeImage, owned; it fails
// every checkpoint while fail is set.
type fakeCheckpoints struct {
	mu     sync.Mutex
	owners map[string]string // snapshot -> owner
	fail   error
}

func (c *fakeCheckpoints) Checkpoint(_ context.Context, owner, _, _, _, _ string, _ map[string]string, _ func(context.Context, []string, func(int64) (io.Writer, error)) error, _ int64) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return "", c.fail
	}
	snap := fmt.Sprintf("snap-%d", len(c.owners)+1)
	c.owners[snap] = owner
	return snap, nil
}

// DiffContainer says the container has one file more than the snapshot.
func (c *fakeCheckpoints) DiffContainer(ctx context.Context, owner, snap, _ string, fn func(path, kind, typ string, size int64)) error {
	if _, err := c.SnapshotImage(ctx, owner, snap); err != nil {
		return err
	}
	fn("/root/new", "added", "file", 3)
	return nil
}

func (c *fakeCheckpoints) DiffSnapshots(ctx context.Context, owner, a, b string, fn func(path, kind, typ string, size int64)) error {
	for _, snap := range []string{a, b} {
		if _, err := c.SnapshotImage(ctx, owner, snap); err != nil {
			return err
		}
	}
	return nil
}

func (c *fakeCheckpoints) SnapshotLabels(ctx context.Context, owner, snap string) (map[string]string, error) {
	_, err := c.SnapshotImage(ctx, owner, snap)
	return nil, err
}

func (c *fakeCheckpoints) Delete(_ context.Context, owner, snap string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owners[snap] != owner {
		return cerrdefs.ErrNotFound.WithMessage("snapshot " + snap + " not found")
	}
	delete(c.owners, snap)
	return nil
}

func (c *fakeCheckpoints) SnapshotImage(_ context.Context, owner, snap string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.owners[snap] != owner {
		return "", cerrdefs.ErrNotFound.WithMessage("snapshot " + snap + " not found")
	}
	return fakeImage, nil
}

// TestCheckpointsOnTheFakeEngine: the operations that span sandboxes and
// snapshots (fork, create from a snapshot, restore in place, checkpoint,
// diff against a live sandbox),
// composed by the orchestrator: a fork's copies carry the source's settings
// and the labels given; a fork is all or nothing; another owner's sandbox
// or snapshot is not found; bad counts and an image with a snapshot are
// invalid; without snapshots configured, each says so.
func TestCheckpointsOnTheFakeEngine(t *testing.T) {
	f := newFakeFixture(t)
	ctx := context.Background()
	src := f.create(t, "k1", CreateOptions{Env: map[string]string{"A": "1"}, Labels: map[string]string{"role": "source"}})
	if _, err := f.o.Checkpoint(ctx, "k1", src.ID, "", nil); !cerrdefs.IsUnavailable(err) {
		t.Fatalf("checkpoint without snapshots: %v", err)
	}

	// Snapshots, and at most 6 sandboxes running for k1.
	cps := &fakeCheckpoints{owners: map[string]string{}}
	f.cfg.Checkpoints = cps
	f.cfg.Quotas = func(context.Context, string) (Quota, error) { return Quota{Running: 6}, nil }
	f.o.Close()
	f.open(t)
	count := func() int {
		list, _, err := f.o.List(ctx, "k1", ListFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(list)
	}

	snap, made, err := f.o.Fork(ctx, "k1", src.ID, 3, map[string]string{"fork": "yes"})
	if err != nil || len(made) != 3 {
		t.Fatalf("fork: %v %d", err, len(made))
	}
	for _, sb := range made {
		if sb.State != StateRunning || sb.Spec.Env["A"] != "1" || sb.Labels["fork"] != "yes" || sb.Labels["role"] != "" {
			t.Fatalf("a fork's copy: %+v", sb)
		}
	}
	for _, n := range []int{0, MaxFork + 1} {
		if _, _, err := f.o.Fork(ctx, "k1", src.ID, n, nil); !cerrdefs.IsInvalidArgument(err) {
			t.Fatalf("fork into %d: %v", n, err)
		}
	}
	if _, _, err := f.o.Fork(ctx, "k2", src.ID, 1, nil); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's fork: %v", err)
	}

	// 4 running: a fork into 3 makes 2 and is refused the third; the two go.
	before := count()
	if _, _, err := f.o.Fork(ctx, "k1", src.ID, 3, nil); err == nil {
		t.Fatal("a fork past the quota was made")
	}
	if n := count(); n != before {
		t.Fatalf("a failed fork left %d sandboxes, had %d", n, before)
	}
	cps.fail = errors.New("the disk is full")
	if _, _, err := f.o.Fork(ctx, "k1", src.ID, 1, nil); err == nil || count() != before {
		t.Fatalf("a fork whose checkpoint failed: %v, %d sandboxes", err, count())
	}
	cps.fail = nil

	if _, _, err := f.o.Create(ctx, "k2", CreateOptions{Snapshot: snap}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's snapshot: %v", err)
	}
	if _, _, err := f.o.Create(ctx, "k1", CreateOptions{Snapshot: snap, Image: fakeImage}); !cerrdefs.IsInvalidArgument(err) {
		t.Fatalf("an image and a snapshot: %v", err)
	}
	if sb, _, err := f.o.Create(ctx, "k1", CreateOptions{Snapshot: snap}); err != nil || sb.State != StateRunning {
		t.Fatalf("create from a snapshot: %v", err)
	}
	if sb, err := f.o.RestoreSnapshot(ctx, "k1", src.ID, snap); err != nil || sb.ID != src.ID || sb.State != StateRunning {
		t.Fatalf("restore: %+v %v", sb, err)
	}
	if _, err := f.o.RestoreSnapshot(ctx, "k1", src.ID, "snap-none"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("restore of no snapshot: %v", err)
	}
	if id, err := f.o.Checkpoint(ctx, "k1", src.ID, "named", nil); err != nil || id == "" {
		t.Fatalf("checkpoint: %q %v", id, err)
	}
	if changes, err := f.o.DiffSandbox(ctx, "k1", snap, src.ID); err != nil || len(changes) != 1 || changes[0] != (Change{Path: "/root/new", Kind: "added", Type: "file", Size: 3}) {
		t.Fatalf("diff against the sandbox: %+v %v", changes, err)
	}
	if _, err := f.o.DiffSandbox(ctx, "k2", snap, src.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's diff: %v", err)
	}
}

// TestReconcileDecidesUnderTheLock: reconcile reads the rows and lists the
// containers before it takes each sandbox's lock. A restore that ends in
// between moves the sandbox to another container; reconcile must act on the
// row and the containers as they are under the lock, neither failing the
// sandbox nor removing the container it now runs on.
func TestReconcileDecidesUnderTheLock(t *testing.T) {
	f := newFakeFixture(t)
	ctx := context.Background()
	f.cfg.Checkpoints = &fakeCheckpoints{owners: map[string]string{}}
	f.o.Close()
	f.open(t)
	for _, when := range []string{"before the restore", "after the restore"} {
		sb := f.create(t, "k1", CreateOptions{})
		snap, err := f.o.Checkpoint(ctx, "k1", sb.ID, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		row, err := f.o.store.get(ctx, sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		list := func() []*runtime.Container {
			cs, err := f.e.List(ctx, map[string]string{runtime.LabelID: sb.ID})
			if err != nil {
				t.Fatal(err)
			}
			out := make([]*runtime.Container, len(cs))
			for i := range cs {
				out[i] = &cs[i]
			}
			return out
		}
		var listed []*runtime.Container
		if when == "before the restore" {
			listed = list()
		}
		restored, err := f.o.RestoreSnapshot(ctx, "k1", sb.ID, snap)
		if err != nil || restored.ContainerID == row.ContainerID {
			t.Fatalf("restore: %+v %v", restored, err)
		}
		if when == "after the restore" {
			listed = list()
		}
		if err := f.o.reconcileOne(ctx, row, listed); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		f.expect(t, "k1", sb.ID, StateRunning, runtime.StateRunning)
		if got, err := f.o.Get(ctx, "k1", sb.ID); err != nil || got.ContainerID != restored.ContainerID {
			t.Fatalf("containers listed %s: the sandbox is on %s, want %s (%v)", when, got.ContainerID, restored.ContainerID, err)
		}
	}
}
