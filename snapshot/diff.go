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
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
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

// ignored are paths that bothy itself mounts into every sandbox.
func ignored(p string) bool { return p == "/.bothy" || strings.HasPrefix(p, "/.bothy/") }

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

// layerTrees caches what each layer holds, by the layer's digest: a layer
// never changes, so it is read once, and a diff reads only the layers no
// earlier diff (or the warm-up after a checkpoint) has read.
var layerTrees = newTreeCache(500_000)

// treeCache holds layer trees, up to a total number of entries, evicting
// the least recently used.
type treeCache struct {
	mu      sync.Mutex
	max     int
	total   int
	trees   map[string]tree
	recency []string // least recent first
}

func newTreeCache(maxEntries int) *treeCache {
	return &treeCache{max: maxEntries, trees: map[string]tree{}}
}

func (c *treeCache) get(digest string) (tree, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.trees[digest]
	if ok {
		c.touch(digest)
	}
	return t, ok
}

func (c *treeCache) put(digest string, t tree) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.trees[digest]; ok || len(t) > c.max {
		return
	}
	c.trees[digest], c.total = t, c.total+len(t)
	c.recency = append(c.recency, digest)
	for c.total > c.max && len(c.recency) > 0 {
		old := c.recency[0]
		c.recency = c.recency[1:]
		c.total -= len(c.trees[old])
		delete(c.trees, old)
	}
}

func (c *treeCache) touch(digest string) {
	for i, d := range c.recency {
		if d == digest {
			c.recency = append(append(c.recency[:i:i], c.recency[i+1:]...), digest)
			return
		}
	}
}

// readLayers returns the trees of img's layers, base first, reading the ones
// not cached from one save of the image.
func (s *Snapshots) readLayers(ctx context.Context, img runtime.Image) ([]tree, error) {
	out := make([]tree, len(img.Layers))
	missing := map[int]bool{}
	for i, d := range img.Layers {
		if t, ok := layerTrees.get(d); ok {
			out[i] = t
		} else {
			missing[i] = true
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	// One image is read at a time: a diff that needs the layers the warm-up
	// is reading waits for them instead of reading them again.
	select {
	case s.reading <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.reading }()
	for i := range missing {
		if t, ok := layerTrees.get(img.Layers[i]); ok {
			out[i] = t
			delete(missing, i)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	sv, err := s.spoolSave(ctx, img.ID)
	if err != nil {
		return nil, err
	}
	defer sv.file.Close()
	if len(sv.layers) != len(img.Layers) {
		return nil, fmt.Errorf("image %s: its archive has %d layers, its inspect %d", img.ID, len(sv.layers), len(img.Layers))
	}
	byName := map[string]int{}
	for i := range missing {
		byName[sv.layers[i]] = i
	}
	err = sv.each(func(h *tar.Header, r io.Reader) error {
		i, ok := byName[h.Name]
		if !ok {
			return nil
		}
		t := tree{}
		if err := t.apply(r); err != nil {
			return err
		}
		out[i] = t
		layerTrees.put(img.Layers[i], t)
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range missing {
		if out[i] == nil {
			return nil, fmt.Errorf("image %s: layer %s is not in its archive", img.ID, sv.layers[i])
		}
	}
	return out, nil
}

// stack merges layer trees, lowest first, into the tree of what they add
// together: a whiteout or an opaque directory of an upper layer hides what
// lower ones have below it.
func stack(layers []tree) tree {
	if len(layers) == 1 {
		return layers[0]
	}
	out := tree{}
	for _, l := range layers {
		for p, e := range l {
			if e.deleted || e.opaque {
				for k := range out {
					if strings.HasPrefix(k, p+"/") {
						delete(out, k)
					}
				}
			}
		}
		for p, e := range l {
			if prev, ok := out[p]; ok && e.typ == "dir" && !e.opaque && prev.opaque {
				e.opaque = true
			}
			out[p] = e
		}
	}
	return out
}

// warmDelay is how long after a checkpoint its layers are read ahead of a
// diff: a restore or fork that follows the checkpoint at once (the common
// case) then does not share the disk and the engine with the read (a
// restore right after a 100 MB checkpoint: 426-449 ms alone, 525-543 ms
// beside the read).
const warmDelay = 5 * time.Second

// warmRequest is a snapshot image queued to be read ahead of a diff.
type warmRequest struct {
	image string
	at    time.Time
}

// warm asks for the layers of a snapshot's image to be read in the
// background, warmDelay from now, so that its first diff need not read
// them; when the queue is full the snapshot's first diff reads them itself.
func (s *Snapshots) warm(image string) {
	select {
	case s.warmQ <- warmRequest{image: image, at: time.Now().Add(warmDelay)}:
	default:
	}
}

// warmLoop reads the queued images' layers, one image at a time, until ctx
// is done.
func (s *Snapshots) warmLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-s.warmQ:
			t := time.NewTimer(time.Until(req.at))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			image := req.image
			img, err := s.eng.ImageInspect(ctx, image)
			if err == nil {
				_, err = s.readLayers(ctx, img)
			}
			if err != nil && ctx.Err() == nil {
				s.log.Debug("read the layers of a snapshot ahead of a diff", "image", image, "err", err)
			}
		}
	}
}

// Diff lists what changed from snapshot a to snapshot b, or to the current
// state of a sandbox (which the caller checkpoints into a temporary image and
// names by toImage). Both must build on the same base image.
func (s *Snapshots) Diff(ctx context.Context, owner, a, toImage string) ([]Change, error) {
	sa, err := s.loaded(ctx, owner, a)
	if err == nil {
		err = s.awaitImage(ctx, toImage)
	}
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
	imgA, err := s.eng.ImageInspect(ctx, sa.Image)
	if err != nil {
		return nil, err
	}
	la, err := s.readLayers(ctx, imgA)
	if err != nil {
		return nil, err
	}
	lb, err := s.readLayers(ctx, imgB)
	if err != nil {
		return nil, err
	}
	nBase := len(base.Layers)
	if len(la) < nBase {
		return nil, fmt.Errorf("snapshot %s has fewer layers than its base", a)
	}
	bt, ta, tb := stack(la[:nBase]), stack(la[nBase:]), stack(lb[nBase:])
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

// DiffSnapshots calls fn, in path order, for what changed from owner's
// snapshot a to owner's snapshot b (orchestrator.Checkpoints).
func (s *Snapshots) DiffSnapshots(ctx context.Context, owner, a, b string, fn func(path, kind, typ string, size int64)) error {
	sb, err := s.loaded(ctx, owner, b)
	if err != nil {
		return err
	}
	changes, err := s.Diff(ctx, owner, a, sb.Image)
	for _, c := range changes {
		fn(c.Path, c.Kind, c.Type, c.Size)
	}
	return err
}

// DiffContainer calls fn, in path order, for what changed from owner's
// snapshot a to the current state of container, captured (paused, like a
// checkpoint) into a temporary image (orchestrator.Checkpoints).
func (s *Snapshots) DiffContainer(ctx context.Context, owner, a, container string, fn func(path, kind, typ string, size int64)) error {
	if _, err := s.Get(ctx, owner, a); err != nil {
		return err
	}
	ref := "bothy/snapshot-diff:" + strings.TrimPrefix(newID(), "snap-")
	if _, err := s.eng.Commit(ctx, container, ref, map[string]string{
		runtime.LabelKind: runtime.KindSnapshot, runtime.LabelOwner: owner, runtime.LabelInstance: s.cfg.Instance,
	}); err != nil {
		return err
	}
	defer s.eng.ImageRemove(context.WithoutCancel(ctx), ref)
	changes, err := s.Diff(ctx, owner, a, ref)
	for _, c := range changes {
		fn(c.Path, c.Kind, c.Type, c.Size)
	}
	return err
}
