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
	f, err := os.CreateTemp(s.scratch, "capture-*.tar")
	if err != nil {
		return "", err
	}
	os.Remove(f.Name()) // the open file is all we need
	defer f.Close()
	sum := sha256.New()
	var size int64
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 256<<10)
	err = src.Capture(ctx, paths, func(n int64) (io.Writer, error) {
		if n > bound {
			return nil, cerrdefs.ErrResourceExhausted.WithMessage(fmt.Sprintf(
				"the sandbox's changes (%d bytes) are larger than its disk limit allows", n))
		}
		size = n
		return bw, nil
	})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return "", fmt.Errorf("capture the sandbox's changes: %w", err)
	}
	diffID := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	config := imageConfig(base.Config, append(slices.Clone(base.Layers), diffID), labels)
	if err := s.loadOnto(ctx, base, f, size, config, ref); err != nil {
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
	for p, e := range t {
		if !e.deleted && !t.hidden(p) {
			out = append(out, p)
		}
	}
	return out, nil
}
