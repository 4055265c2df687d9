package snapshot

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"slices"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// Capture streams a sandbox's changes since its container was made from an
// image whose paths are imagePaths, as a layer (a tar with whiteouts): the
// sandbox's agent does, from inside, so that a checkpoint needs no commit
// by the engine. It tells start the layer's size, then writes the layer to
// the writer start answers.
type Capture func(ctx context.Context, imagePaths []string, start func(size int64) (io.Writer, error)) error

// captureImage makes ref, an image of src's image with the layer src's
// agent captures on top, and answers its ID. The layer is spooled to the
// scratch directory (streamed on into the engine's image load as it came,
// it took longer: 1.17 x docker commit against 1.08-1.21 x), then loaded in an
// archive that carries only it: the engine has the base's layers and does
// not read a layer it has.
func (s *Snapshots) captureImage(ctx context.Context, src Source, ref string, labels map[string]string) (string, error) {
	base, err := s.eng.ImageInspect(ctx, src.Image)
	if err != nil {
		return "", err
	}
	paths, err := s.imagePaths(ctx, base)
	if err != nil {
		return "", fmt.Errorf("the paths of image %s: %w", src.Image, err)
	}
	bound := src.MaxBytes
	if bound <= 0 {
		bound = 1 << 40
	}
	release, err := s.spool(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	f, err := os.CreateTemp(s.scratch, "capture-*.tar")
	if err != nil {
		return "", err
	}
	os.Remove(f.Name()) // the open file is all we need
	defer f.Close()
	sum := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 256<<10)
	// The agent is the sandbox's: it gets room for the size it announced,
	// and not a byte more.
	lw := &exactWriter{w: bw}
	err = src.Capture(ctx, paths, func(n int64) (io.Writer, error) {
		if n > bound {
			return nil, cerrdefs.ErrResourceExhausted.WithMessage(fmt.Sprintf(
				"the sandbox's changes (%d bytes) are larger than its disk limit allows", n))
		}
		lw.size, lw.left = n, n
		return lw, nil
	})
	if err == nil && lw.left != 0 {
		err = fmt.Errorf("the layer ended %d bytes short of the %d announced", lw.left, lw.size)
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return "", fmt.Errorf("capture the sandbox's changes: %w", err)
	}
	diffID := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	config := imageConfig(base.Config, append(slices.Clone(base.Layers), diffID), labels)
	// Once whole, the layer is loaded whatever the caller does.
	ctx = context.WithoutCancel(ctx)
	if err := s.loadOnto(ctx, base, f, lw.size, config, ref); err != nil {
		return "", err
	}
	img, err := s.eng.ImageInspect(ctx, ref)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// loadOnto loads ref, an image of base's layers and the layer in f, into
// the engine, from an archive that carries only the new layer.
func (s *Snapshots) loadOnto(ctx context.Context, base runtime.Image, f *os.File, size int64, config []byte, ref string) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	return s.loadArchive(ctx, func(tw *tar.Writer) error {
		layers := make([]string, 0, len(base.Layers)+1)
		for i := range base.Layers {
			layers = append(layers, fmt.Sprintf("base-%d/layer.tar", i))
		}
		layers = append(layers, "captured/layer.tar")
		if err := writeEntry(tw, "captured/layer.tar", size, f); err != nil {
			return err
		}
		return finishArchive(tw, config, ref, layers)
	})
}

// imagePaths lists the paths img holds, from the trees of its layers (read
// once per layer and kept).
func (s *Snapshots) imagePaths(ctx context.Context, img runtime.Image) ([]string, error) {
	layers, err := s.readLayers(ctx, img)
	if err != nil {
		return nil, err
	}
	t := stack(layers)
	out := make([]string, 0, len(t))
	for p := range t {
		if !t.gone(p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// gone says p, or a directory above it, is deleted in t (a path below an
// opaque directory that t holds is there).
func (t tree) gone(p string) bool {
	for ; ; p = path.Dir(p) {
		if t[p].deleted {
			return true
		}
		if p == "/" {
			return false
		}
	}
}

// exactWriter takes size bytes and refuses any more.
type exactWriter struct {
	w          io.Writer
	size, left int64
}

func (e *exactWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > e.left {
		return 0, fmt.Errorf("the layer runs past the %d bytes announced", e.size)
	}
	n, err := e.w.Write(p)
	e.left -= int64(n)
	return n, err
}
