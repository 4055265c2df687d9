package snapshot

import (
	"context"
	"errors"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
)

// TestDeleteWaitsForTheRegistrysCopy: a snapshot whose published copy the
// registry cannot delete stays (its image is the registry's now), and the
// delete says so (unavailable); deleted again once the registry can, it is
// gone, its copy with it.
func TestDeleteWaitsForTheRegistrysCopy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, sq, cfg := engineBed(t)
	registryDown := true
	var unpublished []string
	cfg.Unpublish = func(_ context.Context, ref string) error {
		if registryDown {
			return errors.New("the registry is down")
		}
		unpublished = append(unpublished, ref)
		return nil
	}
	s, err := New(ctx, cfg, sq, d, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	cid, err := d.Create(ctx, runtime.Spec{Name: cfg.Instance, Image: images.Busybox, Labels: map[string]string{runtime.LabelInstance: cfg.Instance}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Remove(context.Background(), cid) })
	sn, err := s.Create(ctx, "k", Source{SandboxID: "sb", ContainerID: cid, Image: images.Busybox}, "kept", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.ImageRemove(context.Background(), sn.Image) })
	if err := s.Delete(ctx, "k", sn.ID); !cerrdefs.IsUnavailable(err) {
		t.Fatalf("delete with the registry down: %v", err)
	}
	if _, err := s.Get(ctx, "k", sn.ID); err != nil {
		t.Fatalf("the snapshot went with a failed delete: %v", err)
	}
	registryDown = false
	if err := s.Delete(ctx, "k", sn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "k", sn.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	if len(unpublished) != 1 || unpublished[0] != sn.Image {
		t.Fatalf("unpublished %v, want %s", unpublished, sn.Image)
	}
}
