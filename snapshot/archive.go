package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/runtime"
)

// ArchiveFormat names the export format.
const ArchiveFormat = "bothy-snapshot/1"

// manifestName is the first entry of an export archive.
const manifestName = "bothy-snapshot.json"

// Manifest describes an export archive: the snapshot, the base image it needs,
// and every other part with its size and sha256.
type Manifest struct {
	Format     string   `json:"format"`
	Snapshot   Meta     `json:"snapshot"`
	BaseLayers []string `json:"base_layers"`
	Config     Part     `json:"config"`
	Layers     []Part   `json:"layers"`
}

// Meta is what an archive keeps of its snapshot.
type Meta struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	BaseImage string            `json:"base_image"`
	CreatedAt time.Time         `json:"created_at"`
}

// Part is one file of an archive.
type Part struct {
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Archiver is what export and import need of the engine besides Engine.
type Archiver interface {
	ImageSave(ctx context.Context, ref string) (io.ReadCloser, error)
	ImageLoad(ctx context.Context, r io.Reader) error
	ReadImagePath(ctx context.Context, image, path string) (io.ReadCloser, bool, error)
}

// ReadPath streams path as it is in owner's snapshot, as a tar whose entry names
// start at the path's base name; found is false when the snapshot has no such
// path.
func (s *Snapshots) ReadPath(ctx context.Context, owner, id, path string) (io.ReadCloser, bool, error) {
	sn, err := s.loaded(ctx, owner, id)
	if err != nil {
		return nil, false, err
	}
	return s.arch.ReadImagePath(ctx, sn.Image, path)
}

// saved is the engine's own archive of an image, spooled to a file.
type saved struct {
	file     *os.File
	config   string   // entry name of the image config
	layers   []string // entry names of the layer tars, base first
	manifest []byte
}

func (s *Snapshots) spoolSave(ctx context.Context, ref string) (*saved, error) {
	rc, err := s.arch.ImageSave(ctx, ref)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.scratch, "save-*.tar")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // the open file is all we need
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return nil, fmt.Errorf("save image %s: %w", ref, err)
	}
	sv := &saved{file: f}
	err = sv.each(func(h *tar.Header, r io.Reader) error {
		if h.Name != "manifest.json" {
			return nil
		}
		b, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return err
		}
		var m []struct {
			Config string
			Layers []string
		}
		if err := json.Unmarshal(b, &m); err != nil || len(m) != 1 {
			return fmt.Errorf("unexpected image archive manifest")
		}
		sv.config, sv.layers, sv.manifest = m[0].Config, m[0].Layers, b
		return nil
	})
	if err == nil && sv.config == "" {
		err = errors.New("image archive without a manifest")
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return sv, nil
}

// each calls fn for every entry of the spooled archive.
func (sv *saved) each(fn func(*tar.Header, io.Reader) error) error {
	if _, err := sv.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	tr := tar.NewReader(sv.file)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(h, tr); err != nil {
			return err
		}
	}
}

// Export writes owner's snapshot as a portable archive: a manifest, the image
// config, and only the layers the snapshot adds to its base image.
func (s *Snapshots) Export(ctx context.Context, owner, id string, w io.Writer) error {
	sn, err := s.loaded(ctx, owner, id)
	if err != nil {
		return err
	}
	img, err := s.eng.ImageInspect(ctx, sn.Image)
	if err != nil {
		return err
	}
	base, err := s.eng.ImageInspect(ctx, sn.BaseImage)
	if err != nil {
		return errclass.Wrap(cerrdefs.ErrFailedPrecondition, err, fmt.Sprintf("the base image %s of snapshot %s is gone", sn.BaseImage, id))
	}
	if len(img.Layers) < len(base.Layers) || !slices.Equal(img.Layers[:len(base.Layers)], base.Layers) {
		return fmt.Errorf("snapshot %s does not build on its base image %s", id, sn.BaseImage)
	}
	done, err := s.spool(ctx)
	if err != nil {
		return err
	}
	defer done()
	sv, err := s.spoolSave(ctx, sn.Image)
	if err != nil {
		return err
	}
	defer sv.file.Close()
	if len(sv.layers) != len(img.Layers) {
		return fmt.Errorf("image archive of %s has %d layers, want %d", sn.Image, len(sv.layers), len(img.Layers))
	}
	added := sv.layers[len(base.Layers):]
	m := Manifest{
		Format:     ArchiveFormat,
		Snapshot:   Meta{ID: sn.ID, Name: sn.Name, Labels: sn.Labels, BaseImage: sn.BaseImage, CreatedAt: sn.CreatedAt},
		BaseLayers: base.Layers,
	}
	// The config is bothy's own, not the commit's: the commit copied the
	// container's environment and settings, which are not the archive's to
	// carry.
	config := imageConfig(base.Config, img.Layers, nil)
	sum := sha256.Sum256(config)
	m.Config = Part{Size: int64(len(config)), SHA256: hex.EncodeToString(sum[:])}
	// Digest the parts first: the manifest leads the archive.
	parts := map[string]*Part{}
	m.Layers = make([]Part, len(added))
	for i, name := range added {
		parts[name] = &m.Layers[i]
	}
	err = sv.each(func(h *tar.Header, r io.Reader) error {
		p, ok := parts[h.Name]
		if !ok {
			return nil
		}
		hash := sha256.New()
		n, err := io.Copy(hash, r)
		p.Size, p.SHA256 = n, hex.EncodeToString(hash.Sum(nil))
		return err
	})
	if err != nil {
		return err
	}
	m.Config.File = "config.json"
	for i := range m.Layers {
		m.Layers[i].File = fmt.Sprintf("layers/%d.tar", i)
		if "sha256:"+m.Layers[i].SHA256 != img.Layers[len(base.Layers)+i] {
			return fmt.Errorf("layer %d of %s does not match its digest", i, sn.Image)
		}
	}
	tw := tar.NewWriter(w)
	mb, _ := json.MarshalIndent(m, "", "  ")
	if err := writeEntry(tw, manifestName, int64(len(mb)), strings.NewReader(string(mb))); err != nil {
		return err
	}
	if err := writeEntry(tw, m.Config.File, m.Config.Size, bytes.NewReader(config)); err != nil {
		return err
	}
	order := added
	outName := map[string]string{}
	for i, name := range added {
		outName[name] = m.Layers[i].File
	}
	for _, want := range order {
		err := sv.each(func(h *tar.Header, r io.Reader) error {
			if h.Name != want {
				return nil
			}
			return writeEntry(tw, outName[want], h.Size, r)
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeEntry(tw *tar.Writer, name string, size int64, r io.Reader) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err := io.CopyN(tw, r, size)
	return err
}

// errArchive refuses an archive that is not whole and unchanged.
func errArchive(format string, args ...any) error {
	return cerrdefs.ErrInvalidArgument.WithMessage("snapshot archive refused: " + fmt.Sprintf(format, args...))
}

// Import verifies an export archive part by part (sizes and sha256 against its
// manifest, and that its base image is here, layer for layer) and only then
// loads it as a new snapshot of owner's. A truncated or altered archive is
// refused and stores nothing.
func (s *Snapshots) Import(ctx context.Context, owner string, r io.Reader, maxBytes int64) (Snapshot, error) {
	done, err := s.spool(ctx)
	if err != nil {
		return Snapshot{}, err
	}
	defer done()
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil || h.Name != manifestName || h.Size > 1<<20 {
		return Snapshot{}, errArchive("it does not start with %s", manifestName)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&m); err != nil || m.Format != ArchiveFormat {
		return Snapshot{}, errArchive("its manifest is not a %s manifest", ArchiveFormat)
	}
	base, err := s.eng.ImageInspect(ctx, m.Snapshot.BaseImage)
	if err != nil || !slices.Equal(base.Layers, m.BaseLayers) {
		return Snapshot{}, errArchive("it needs the base image %s, which is not here or differs from the exporter's", m.Snapshot.BaseImage)
	}
	want := map[string]Part{m.Config.File: m.Config}
	for _, l := range m.Layers {
		want[l.File] = l
	}
	got := map[string]*os.File{}
	defer func() {
		for _, f := range got {
			f.Close()
		}
	}()
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Snapshot{}, errArchive("it is truncated or malformed (%v)", err)
		}
		p, ok := want[h.Name]
		if !ok || got[h.Name] != nil {
			return Snapshot{}, errArchive("unexpected entry %q", h.Name)
		}
		if total += h.Size; maxBytes > 0 && total > maxBytes {
			return Snapshot{}, cerrdefs.ErrInvalidArgument.WithMessage("snapshot archive refused: larger than the limit")
		}
		f, err := os.CreateTemp(s.scratch, "import-*")
		if err != nil {
			return Snapshot{}, err
		}
		os.Remove(f.Name())
		got[h.Name] = f
		hash := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, hash), tr)
		if err != nil {
			return Snapshot{}, errArchive("%s is truncated (%v)", h.Name, err)
		}
		if n != p.Size || hex.EncodeToString(hash.Sum(nil)) != p.SHA256 {
			return Snapshot{}, errArchive("%s does not match its sha256 in the manifest: the archive is corrupt or was altered", h.Name)
		}
	}
	for name := range want {
		if got[name] == nil {
			return Snapshot{}, errArchive("it is truncated: %s is missing", name)
		}
	}
	// Every part checks out: load base layers + added layers + config as a
	// new image, through the engine's own archive format.
	sn := Snapshot{
		ID: newID(), Name: m.Snapshot.Name, Owner: owner, SandboxID: "", BaseImage: m.Snapshot.BaseImage,
		Labels: m.Snapshot.Labels, State: StatePending, CreatedAt: time.Now().UTC(),
	}
	sn.Image = ImageRef(sn.ID)
	var adding int64
	for _, l := range m.Layers {
		adding += l.Size
	}
	if err := s.insertWithin(ctx, &sn, adding); err != nil {
		return Snapshot{}, err
	}
	// The archive's config is verified but not used: what an image makes of
	// its containers (environment, health checks, volumes, labels) is
	// bothy's to say. The new image gets its base image's settings.
	diffIDs := append([]string(nil), base.Layers...)
	for _, l := range m.Layers {
		diffIDs = append(diffIDs, "sha256:"+l.SHA256)
	}
	config := imageConfig(base.Config, diffIDs, map[string]string{
		runtime.LabelKind: runtime.KindSnapshot, runtime.LabelID: sn.ID, runtime.LabelOwner: owner,
		runtime.LabelInstance: s.cfg.Instance,
	})
	if err := s.load(ctx, m, got, config, sn.Image); err != nil {
		_, _ = s.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM snapshots WHERE id = ?`, sn.ID)
		_ = s.eng.ImageRemove(context.WithoutCancel(ctx), sn.Image)
		return Snapshot{}, err
	}
	img, err := s.eng.ImageInspect(ctx, sn.Image)
	if err != nil || len(img.Layers) != len(base.Layers)+len(m.Layers) {
		_, _ = s.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM snapshots WHERE id = ?`, sn.ID)
		return Snapshot{}, fmt.Errorf("the loaded image is not the archive's (%v)", err)
	}
	if s.cfg.Publish != nil {
		if err := s.cfg.Publish(ctx, sn.Image); err != nil {
			_, _ = s.db.ExecContext(context.WithoutCancel(ctx), `DELETE FROM snapshots WHERE id = ?`, sn.ID)
			_ = s.eng.ImageRemove(context.WithoutCancel(ctx), sn.Image)
			return Snapshot{}, err
		}
	}
	for _, l := range m.Layers {
		sn.Size += l.Size
	}
	sn.State = StateReady
	if _, err := s.db.ExecContext(ctx, `UPDATE snapshots SET state = ?, size = ? WHERE id = ?`, sn.State, sn.Size, sn.ID); err != nil {
		return Snapshot{}, err
	}
	s.log.Info("snapshot imported", "snapshot_id", sn.ID, "from", m.Snapshot.ID, "bytes", sn.Size)
	return sn, nil
}

// imageConfig is an engine image config of bothy's own: the layers, the
// settings of base (environment, command, working directory, user) and
// labels, and nothing else (no health check, volumes, ports or anything a
// commit or an archive brought along).
func imageConfig(base runtime.ImageConfig, diffIDs []string, labels map[string]string) []byte {
	type config struct {
		Env        []string          `json:"Env,omitempty"`
		Cmd        []string          `json:"Cmd,omitempty"`
		WorkingDir string            `json:"WorkingDir,omitempty"`
		User       string            `json:"User,omitempty"`
		Labels     map[string]string `json:"Labels,omitempty"`
	}
	b, _ := json.Marshal(struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       config `json:"config"`
		RootFS       struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}{
		Architecture: goruntime.GOARCH, OS: "linux",
		Config: config{Env: base.Env, Cmd: base.Cmd, WorkingDir: base.WorkingDir, User: base.User, Labels: labels},
		RootFS: struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		}{"layers", diffIDs},
	})
	return b
}

// load builds an engine image archive of the base image's layers (from the
// engine) and the verified parts, and loads it as ref.
func (s *Snapshots) load(ctx context.Context, m Manifest, parts map[string]*os.File, config []byte, ref string) error {
	sv, err := s.spoolSave(ctx, m.Snapshot.BaseImage)
	if err != nil {
		return err
	}
	defer sv.file.Close()
	return s.loadArchive(ctx, func(tw *tar.Writer) error {
		layers := append([]string(nil), sv.layers...)
		baseLayer := map[string]bool{}
		for _, l := range sv.layers {
			baseLayer[l] = true
		}
		if err := sv.each(func(h *tar.Header, r io.Reader) error {
			if !baseLayer[h.Name] {
				return nil
			}
			return writeEntry(tw, h.Name, h.Size, r)
		}); err != nil {
			return err
		}
		for i, l := range m.Layers {
			f := parts[l.File]
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return err
			}
			name := fmt.Sprintf("bothy-%d-%s/layer.tar", i, l.SHA256[:12])
			if err := writeEntry(tw, name, l.Size, f); err != nil {
				return err
			}
			layers = append(layers, name)
		}
		return finishArchive(tw, config, ref, layers)
	})
}

// loadArchive loads into the engine the image archive that write writes,
// as it is written.
func (s *Snapshots) loadArchive(ctx context.Context, write func(tw *tar.Writer) error) error {
	pr, pw := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		err := s.arch.ImageLoad(ctx, pr)
		pr.CloseWithError(err) // a load that fails early stops the writing
		errc <- err
	}()
	tw := tar.NewWriter(pw)
	werr := write(tw)
	if werr == nil {
		werr = tw.Close()
	}
	pw.CloseWithError(werr)
	if lerr := <-errc; werr == nil {
		werr = lerr
	}
	return werr
}

// finishArchive writes an image archive's config and its manifest, which
// names ref and the archive's layers, base first.
func finishArchive(tw *tar.Writer, config []byte, ref string, layers []string) error {
	sum := sha256.Sum256(config)
	configName := hex.EncodeToString(sum[:]) + ".json"
	if err := writeEntry(tw, configName, int64(len(config)), bytes.NewReader(config)); err != nil {
		return err
	}
	man, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{ref}, "Layers": layers}})
	return writeEntry(tw, "manifest.json", int64(len(man)), bytes.NewReader(man))
}
