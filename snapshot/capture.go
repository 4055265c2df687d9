package snapshot

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// Capture streams a sandbox's changes since its container was made from an
// image whose paths are imagePaths, as a layer (a tar with whiteouts): the
// sandbox's agent does, from inside, so that a checkpoint needs no commit
// by the engine. It tells start the layer's size, then writes the layer to
// the writer start answers.
type Capture func(ctx context.Context, imagePaths []string, start func(size int64) (io.Writer, error)) error

// capturedLayer is a layer src's agent captured, spooled to the scratch
// directory (layerFiles) until the engine has loaded it: what its load
// needs, kept beside it so that a bothy restarted before the load resumes
// it.
type capturedLayer struct {
	Base   string `json:"base"`   // the image the layer goes onto
	Config []byte `json:"config"` // the config of the image it makes
	Size   int64  `json:"size"`
}

// layerFiles are where snapshot id's captured layer and its description
// are kept until it is loaded.
func (s *Snapshots) layerFiles(id string) (layer, meta string) {
	return filepath.Join(s.scratch, "layer-"+id+".tar"), filepath.Join(s.scratch, "layer-"+id+".json")
}

// capture spools the layer src's agent captures for snapshot id, an image
// of src's image with the layer on top, labelled labels. The layer is
// spooled to the scratch directory (streamed on into the engine's image
// load as it came, the checkpoint took longer: 1.17 x docker commit against
// 1.08-1.21 x), then loaded in an archive that carries only it (loadLayer).
func (s *Snapshots) capture(ctx context.Context, src Source, id string, labels map[string]string) (capturedLayer, error) {
	base, err := s.eng.ImageInspect(ctx, src.Image)
	if err != nil {
		return capturedLayer{}, err
	}
	paths, err := s.imagePaths(ctx, base)
	if err != nil {
		return capturedLayer{}, fmt.Errorf("the paths of image %s: %w", src.Image, err)
	}
	bound := src.MaxBytes
	if bound <= 0 {
		bound = 1 << 40
	}
	release, err := s.spool(ctx)
	if err != nil {
		return capturedLayer{}, err
	}
	defer release()
	file, meta := s.layerFiles(id)
	f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return capturedLayer{}, err
	}
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
		os.Remove(file)
		return capturedLayer{}, fmt.Errorf("capture the sandbox's changes: %w", err)
	}
	diffID := "sha256:" + hex.EncodeToString(sum.Sum(nil))
	layer := capturedLayer{Base: src.Image, Config: imageConfig(base.Config, append(slices.Clone(base.Layers), diffID), labels), Size: lw.size}
	b, _ := json.Marshal(layer)
	if err := writeFileAtomic(meta, b); err != nil {
		os.Remove(file)
		return capturedLayer{}, err
	}
	return layer, nil
}

// writeFileAtomic writes b to name through a temporary file renamed over
// it: a reader finds all of it or none.
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// layerLoad is the load of a captured layer into the engine, under way.
type layerLoad struct {
	base string // the image it loads onto
	done chan struct{}
	err  error // set before done is closed
}

const (
	// loadSlots is how many captured layers load into the engine at once.
	loadSlots = 2
	// unloadedLayers is how many captured layers may wait in the scratch
	// directory for their load (resumed ones aside): captures come faster
	// than loads, and a host's disk must not fill with the backlog.
	unloadedLayers = 4
)

// takeUnloaded waits for a place among the captured layers not yet
// loaded.
func (s *Snapshots) takeUnloaded(ctx context.Context) error {
	select {
	case s.unloaded <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startLoad loads snapshot id's captured layer as ref in the background,
// once the snapshot has answered: the engine's load of a layer it is
// handed (it writes the layer to its own scratch directory before it
// applies it) took 1.0 s of an agent's 1.6 s checkpoint of 100 MB. Whatever
// reads ref waits for it (awaitImage). A load that fails forgets the
// snapshot. release, when set, is called once the load is done.
func (s *Snapshots) startLoad(id, ref string, layer capturedLayer, release func()) {
	l := &layerLoad{base: layer.Base, done: make(chan struct{})}
	s.loadMu.Lock()
	if s.loadsClosed {
		// Closing: the layer stays spooled, and the next start loads it.
		s.loadMu.Unlock()
		if release != nil {
			release()
		}
		return
	}
	s.loads[ref] = l
	s.loading.Add(1)
	s.loadMu.Unlock()
	go func() {
		defer s.loading.Done()
		ctx := context.Background()
		s.loadSlots <- struct{}{}
		l.err = s.loadLayer(ctx, id, ref, layer)
		<-s.loadSlots
		if release != nil {
			release()
		}
		if l.err != nil {
			s.log.Error("load a captured snapshot: the snapshot is forgotten", "snapshot_id", id, "err", l.err)
			if _, err := s.db.ExecContext(ctx, `DELETE FROM snapshots WHERE id = ?`, id); err != nil {
				s.log.Warn("forget a snapshot whose layer did not load", "snapshot_id", id, "err", err)
			}
		}
		s.loadMu.Lock()
		delete(s.loads, ref)
		s.loadMu.Unlock()
		close(l.done)
		if l.err == nil {
			s.warm(ref)
		}
	}()
}

// loadLayer loads snapshot id's captured layer into the engine as ref, and
// removes its files whatever happens.
func (s *Snapshots) loadLayer(ctx context.Context, id, ref string, layer capturedLayer) error {
	file, meta := s.layerFiles(id)
	defer os.Remove(meta)
	defer os.Remove(file)
	base, err := s.eng.ImageInspect(ctx, layer.Base)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	return s.loadOnto(ctx, base, f, layer.Size, layer.Config, ref)
}

// awaitImage waits until the engine has ref, where a captured layer of it
// is being loaded; the load's error if it failed.
func (s *Snapshots) awaitImage(ctx context.Context, ref string) error {
	s.loadMu.Lock()
	l := s.loads[ref]
	s.loadMu.Unlock()
	if l == nil {
		return nil
	}
	select {
	case <-l.done:
		if l.err != nil {
			return fmt.Errorf("the snapshot's layer did not load: %w", l.err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// awaitLoadsOnto waits until no captured layer loads onto image (which a
// delete of image would take from under it).
func (s *Snapshots) awaitLoadsOnto(ctx context.Context, image string) error {
	s.loadMu.Lock()
	var onto []*layerLoad
	for _, l := range s.loads {
		if l.base == image {
			onto = append(onto, l)
		}
	}
	s.loadMu.Unlock()
	for _, l := range onto {
		select {
		case <-l.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// resumeLoads, at start, loads the captured layers a bothy that stopped
// left unloaded, for snapshots that are ready without their image; it
// removes the rest.
func (s *Snapshots) resumeLoads(ctx context.Context) error {
	metas, err := filepath.Glob(filepath.Join(s.scratch, "layer-*.json"))
	if err != nil {
		return err
	}
	for _, meta := range metas {
		id := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(meta), "layer-"), ".json")
		file, _ := s.layerFiles(id)
		sn, err := s.get(ctx, id)
		if cerrdefs.IsNotFound(err) || (err == nil && sn.State != StateReady) {
			os.Remove(file) // no snapshot's
			os.Remove(meta)
			continue
		}
		if err != nil {
			return err
		}
		if _, err := s.eng.ImageInspect(ctx, sn.Image); err == nil {
			os.Remove(file) // loaded before the stop
			os.Remove(meta)
			continue
		} else if !cerrdefs.IsNotFound(err) {
			return err
		}
		var layer capturedLayer
		b, err := os.ReadFile(meta)
		if err == nil {
			err = json.Unmarshal(b, &layer)
		}
		if err != nil {
			// Its layer is lost: so is the snapshot.
			s.log.Error("a captured snapshot's layer is lost: the snapshot is forgotten", "snapshot_id", id, "err", err)
			if _, err := s.db.ExecContext(ctx, `DELETE FROM snapshots WHERE id = ?`, id); err != nil {
				return err
			}
			os.Remove(file)
			os.Remove(meta)
			continue
		}
		s.log.Info("loading a captured snapshot's layer that a stop left unloaded", "snapshot_id", id)
		s.startLoad(id, sn.Image, layer, nil)
	}
	tmps, _ := filepath.Glob(filepath.Join(s.scratch, "layer-*.json.tmp"))
	for _, p := range tmps {
		os.Remove(p)
	}
	// Layers a stop cut short, before they were described.
	parts, _ := filepath.Glob(filepath.Join(s.scratch, "layer-*.tar"))
	for _, p := range parts {
		if _, err := os.Stat(strings.TrimSuffix(p, ".tar") + ".json"); errors.Is(err, fs.ErrNotExist) {
			os.Remove(p)
		}
	}
	return nil
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
