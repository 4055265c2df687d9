package snapshot

import (
	"context"
	"strings"
	"testing"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
)

// TestReconcileRemovesImagesNoSnapshotOwns: an image of this instance with no
// snapshot row (a checkpoint bothy forgot when it was killed) is removed;
// a snapshot's image, and another instance's orphan, are kept.
func TestReconcileRemovesImagesNoSnapshotOwns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, sq, cfg := engineBed(t)
	instance := cfg.Instance
	tag := strings.TrimPrefix(instance, "snaptest-") // this test's, in the images' names
	cfg.OrphanGrace = 1
	s, err := New(ctx, cfg, sq, d, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	cid, err := d.Create(ctx, runtime.Spec{Name: instance, Image: images.Busybox, Labels: map[string]string{runtime.LabelInstance: instance}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove(context.Background(), cid) })
	commit := func(id, inst string) string {
		ref := ImageRef(id)
		if _, err := d.Commit(ctx, cid, ref, map[string]string{
			runtime.LabelKind: runtime.KindSnapshot, runtime.LabelID: id, runtime.LabelOwner: "k", runtime.LabelInstance: inst,
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.ImageRemove(context.Background(), ref) })
		return ref
	}
	orphan := commit("snap-orphan-"+tag, instance)
	others := commit("snap-others-"+tag, "another-instance")
	// An untagged image of this instance's: committing again under the same
	// name takes the tag away from the first.
	danglingRef := ImageRef("snap-dangling-" + tag)
	dangling, err := d.Commit(ctx, cid, danglingRef, map[string]string{
		runtime.LabelKind: runtime.KindSnapshot, runtime.LabelID: "snap-dangling", runtime.LabelOwner: "k", runtime.LabelInstance: instance,
	})
	if err != nil {
		t.Fatal(err)
	}
	commit("snap-dangling-"+tag, instance)
	kept := Snapshot{ID: "snap-kept-" + tag, Name: "kept", Owner: "k", BaseImage: images.Busybox, State: StateReady}
	kept.Image = commit(kept.ID, instance)
	if err := s.insert(ctx, &kept); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{orphan, dangling, danglingRef} {
		if _, err := d.ImageInspect(ctx, ref); err == nil {
			t.Fatalf("the orphaned image %s is still there", ref)
		}
	}
	for _, ref := range []string{others, kept.Image} {
		if _, err := d.ImageInspect(ctx, ref); err != nil {
			t.Fatalf("%s was removed: %v", ref, err)
		}
	}
}
