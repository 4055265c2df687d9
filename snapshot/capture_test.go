package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
)

// TestCapturedLayerLoadsAfterARestart: a snapshot answers once its
// captured layer is spooled, and the engine loads the layer after. A
// bothy that stopped before that load loads it at its next start, and
// whatever reads the snapshot waits for it; a spooled layer no snapshot
// owns is removed.
func TestCapturedLayerLoadsAfterARestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d, sq, cfg := engineBed(t)
	s, err := New(ctx, cfg, sq, d, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	// A layer as an agent streams it: one new file.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "root/after-restart", Mode: 0o644, Typeflag: tar.TypeReg, Size: 6})
	tw.Write([]byte("kept!\n"))
	tw.Close()
	src := Source{SandboxID: "sb", Image: images.Busybox, Capture: func(_ context.Context, _ []string, start func(int64) (io.Writer, error)) error {
		w, err := start(int64(buf.Len()))
		if err == nil {
			_, err = w.Write(buf.Bytes())
		}
		return err
	}}
	// Stopped after the snapshot answered, before its layer loaded.
	sn := Snapshot{ID: newID(), Name: "n", Owner: "k", SandboxID: "sb", BaseImage: images.Busybox, State: StateReady}
	sn.Image = ImageRef(sn.ID)
	if _, err := s.capture(ctx, src, sn.ID, map[string]string{runtime.LabelKind: runtime.KindSnapshot, runtime.LabelID: sn.ID,
		runtime.LabelInstance: cfg.Instance}); err != nil {
		t.Fatal(err)
	}
	if err := s.insert(ctx, &sn); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(cfg.Scratch, "layer-snap-stray.tar")
	if err := os.WriteFile(stray, []byte("cut short"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = New(ctx, cfg, sq, d, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.ImageRemove(context.Background(), sn.Image) })
	rc, found, err := s.ReadPath(ctx, "k", sn.ID, "/root/after-restart")
	if err != nil || !found {
		t.Fatalf("read the snapshot after a restart: %v %v", found, err)
	}
	tr := tar.NewReader(rc)
	if _, err := tr.Next(); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(tr)
	rc.Close()
	if string(got) != "kept!\n" {
		t.Fatalf("the file in the snapshot: %q", got)
	}
	s.Close()
	left, _ := filepath.Glob(filepath.Join(cfg.Scratch, "layer-*"))
	if len(left) != 0 {
		t.Fatalf("left in the scratch directory: %v", left)
	}
	if err := s.Delete(ctx, "k", sn.ID); err != nil {
		t.Fatal(err)
	}
}
