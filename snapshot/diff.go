package snapshot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/sandboxd/sandboxd/runtime"
)

// Change kinds of a diff.
const (
	Added    = "added"
	Modified = "modified"
	Deleted  = "deleted"
)

// Change is one path that differs between two states.
type Change struct {
	Path string
	Kind string // added, modified, deleted
	Type string // file, dir, symlink, other (of the new state; of the old for a deletion)
	Size int64
}

// entry is what a layer says of one path.
type entry struct {
	typ     string
	size    int64
	mode    int64
	hash    string
	link    string
	deleted bool // a whiteout: the path (and all below it) is gone
	opaque  bool // an opaque directory: what lower layers had below it is gone
}

// tree is the state of paths that some layers produce.
type tree map[string]entry

// hidden reports whether p is gone in t because an ancestor was deleted or made
// opaque (when p itself is not in t).
func (t tree) hidden(p string) bool {
	for d := path.Dir(p); ; d = path.Dir(d) {
		if e, ok := t[d]; ok && (e.deleted || e.opaque) {
			return true
		}
		if d == "/" {
			return false
		}
	}
}

// ignored are paths that sandboxd itself mounts into every sandbox.
func ignored(p string) bool { return p == "/.sandboxd" || strings.HasPrefix(p, "/.sandboxd/") }

// apply reads one layer tar into t.
func (t tree) apply(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p := path.Clean("/" + h.Name)
		dir, base := path.Dir(p), path.Base(p)
		switch {
		case base == ".wh..wh..opq":
			e := t[dir]
			e.opaque, e.typ = true, "dir"
			t[dir] = e
			continue
		case strings.HasPrefix(base, ".wh."):
			gone := path.Join(dir, strings.TrimPrefix(base, ".wh."))
			for k := range t { // what this layer set aside below it goes too
				if strings.HasPrefix(k, gone+"/") {
					delete(t, k)
				}
			}
			t[gone] = entry{deleted: true}
			continue
		}
		if ignored(p) {
			continue
		}
		e := entry{size: h.Size, mode: h.Mode & 0o7777, link: h.Linkname}
		switch h.Typeflag {
		case tar.TypeReg:
			e.typ = "file"
			hash := sha256.New()
			if _, err := io.Copy(hash, tr); err != nil {
				return err
			}
			e.hash = hex.EncodeToString(hash.Sum(nil))
		case tar.TypeDir:
			e.typ, e.size = "dir", 0
		case tar.TypeSymlink:
			e.typ = "symlink"
		case tar.TypeLink:
			e.typ = "file" // a hard link's content is its target's
		default:
			e.typ = "other"
		}
		t[p] = e
	}
}

// baseTrees caches the listing of base images (they are large and immutable).
var baseTrees sync.Map // image ID -> tree

// layerTrees reads image's layers: the base's (the first nBase) into one tree,
// the rest (what the snapshot adds) into another.
func (s *Snapshots) layerTrees(ctx context.Context, image string, nBase int, wantBase bool) (base, added tree, err error) {
	sv, err := s.spoolSave(ctx, image)
	if err != nil {
		return nil, nil, err
	}
	defer sv.file.Close()
	if nBase > len(sv.layers) {
		return nil, nil, fmt.Errorf("image %s has fewer layers than its base", image)
	}
	base, added = tree{}, tree{}
	for i, name := range sv.layers {
		if i < nBase && !wantBase {
			continue
		}
		t := added
		if i < nBase {
			t = base
		}
		err := sv.each(func(h *tar.Header, r io.Reader) error {
			if h.Name != name {
				return nil
			}
			return t.apply(r)
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return base, added, nil
}

// Diff lists what changed from snapshot a to snapshot b, or to the current
// state of a sandbox (which the caller checkpoints into a temporary image and
// names by toImage). Both must build on the same base image.
func (s *Snapshots) Diff(ctx context.Context, owner, a, toImage string) ([]Change, error) {
	sa, err := s.Get(ctx, owner, a)
	if err != nil {
		return nil, err
	}
	base, err := s.eng.ImageInspect(ctx, sa.BaseImage)
	if err != nil {
		return nil, cerrdefs.ErrFailedPrecondition.WithMessage("the base image " + sa.BaseImage + " is gone")
	}
	imgB, err := s.eng.ImageInspect(ctx, toImage)
	if err != nil {
		return nil, err
	}
	if len(imgB.Layers) < len(base.Layers) || strings.Join(imgB.Layers[:len(base.Layers)], ",") != strings.Join(base.Layers, ",") {
		return nil, cerrdefs.ErrInvalidArgument.WithMessage("the two states do not build on the same base image, " + sa.BaseImage)
	}
	baseTree, ok := baseTrees.Load(base.ID)
	if !ok {
		bt, _, err := s.layerTrees(ctx, sa.BaseImage, len(base.Layers), true)
		if err != nil {
			return nil, err
		}
		baseTrees.Store(base.ID, bt)
		baseTree = bt
	}
	bt := baseTree.(tree)
	_, ta, err := s.layerTrees(ctx, sa.Image, len(base.Layers), false)
	if err != nil {
		return nil, err
	}
	_, tb, err := s.layerTrees(ctx, toImage, len(base.Layers), false)
	if err != nil {
		return nil, err
	}
	state := func(t tree, p string) (entry, bool) {
		if e, ok := t[p]; ok {
			if e.deleted {
				return entry{}, false
			}
			if e.opaque {
				return entry{typ: "dir", mode: e.mode}, true
			}
			return e, true
		}
		if t.hidden(p) {
			return entry{}, false
		}
		e, ok := bt[p]
		return e, ok
	}
	paths := map[string]bool{}
	for p := range ta {
		paths[p] = true
	}
	for p := range tb {
		paths[p] = true
	}
	var out []Change
	for p := range paths {
		ea, inA := state(ta, p)
		eb, inB := state(tb, p)
		switch {
		case !inA && inB:
			out = append(out, Change{Path: p, Kind: Added, Type: eb.typ, Size: eb.size})
		case inA && !inB:
			out = append(out, Change{Path: p, Kind: Deleted, Type: ea.typ, Size: ea.size})
		case inA && inB && ea.typ != "dir" && (ea.typ != eb.typ || ea.size != eb.size || ea.mode != eb.mode || ea.hash != eb.hash || ea.link != eb.link):
			out = append(out, Change{Path: p, Kind: Modified, Type: eb.typ, Size: eb.size})
		case inA && inB && ea.typ == "dir" && (eb.typ != "dir" || ea.mode != eb.mode):
			out = append(out, Change{Path: p, Kind: Modified, Type: eb.typ, Size: eb.size})
		}
	}
	// A deleted directory stands for everything below it.
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	var folded []Change
	for _, c := range out {
		if n := len(folded); n > 0 && folded[n-1].Kind == Deleted && c.Kind == Deleted && strings.HasPrefix(c.Path, folded[n-1].Path+"/") {
			continue
		}
		folded = append(folded, c)
	}
	return folded, nil
}

// DiffSandbox lists what changed from snapshot a to the current state of the
// sandbox src, captured (paused, like a checkpoint) into a temporary image.
func (s *Snapshots) DiffSandbox(ctx context.Context, owner, a string, src Source) ([]Change, error) {
	if _, err := s.Get(ctx, owner, a); err != nil {
		return nil, err
	}
	ref := "sandboxd/snapshot-diff:" + strings.TrimPrefix(newID(), "snap-")
	if _, err := s.eng.Commit(ctx, src.ContainerID, ref, map[string]string{
		runtime.LabelKind: runtime.KindSnapshot, runtime.LabelOwner: owner, runtime.LabelInstance: s.cfg.Instance,
	}); err != nil {
		return nil, err
	}
	defer s.eng.ImageRemove(context.WithoutCancel(ctx), ref)
	return s.Diff(ctx, owner, a, ref)
}
