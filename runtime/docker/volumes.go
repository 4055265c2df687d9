package docker

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
	"path"
	"sort"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// An image that declares a VOLUME gets, in every container made from it,
// an anonymous volume in the engine's data root: outside the container's
// disk limit (btrfs counts the container's own subvolume only), so a
// sandbox limited to 16 MiB could fill the host's disk through it. The
// engine offers no way to create a container without its image's volumes.
// So a container is made from the image as it is without them: a copy
// whose configuration declares none, with one small layer on top that
// makes the volumes' directories (the image's own layers are shared), made
// once per image and kept under a tag of its own. The VOLUME paths are
// then plain directories of the container's filesystem, inside its limit.

// volumeFree names the copy of an image without volumes.
const volumeFree = "bothy/volume-free"

// LabelVolumeFreeOf marks a volume-free copy with the ID of its image.
const LabelVolumeFreeOf = "bothy.volume-free-of"

// withoutVolumes returns ref, or the reference of its volume-free copy
// (made now if missing) when ref's image declares volumes.
func (d *Docker) withoutVolumes(ctx context.Context, ref string) (string, error) {
	res, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return ref, nil // the create that follows says so
		}
		return "", fmt.Errorf("inspect image %s: %w", ref, err)
	}
	if res.Config == nil || len(res.Config.Volumes) == 0 {
		return ref, nil
	}
	id := strings.TrimPrefix(res.ID, "sha256:")
	copyRef := volumeFree + ":" + id[:min(len(id), 24)]
	d.volumesMu.Lock()
	mu := d.deriving[copyRef]
	if mu == nil {
		mu = &sync.Mutex{}
		d.deriving[copyRef] = mu
	}
	d.volumesMu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if _, err := d.cli.ImageInspect(ctx, copyRef); err == nil {
		return copyRef, nil
	}
	d.log.Info("making a copy of an image without its volumes", "image", ref, "copy", copyRef)
	if err := d.deriveVolumeFree(ctx, ref, res.ID, copyRef); err != nil {
		return "", fmt.Errorf("image %s declares volumes, and its copy without them failed: %w", ref, err)
	}
	return copyRef, nil
}

// deriveVolumeFree saves ref and loads it back as copyRef, its config
// without volumes: the archive streams from the engine back into it, its
// layers untouched.
func (d *Docker) deriveVolumeFree(ctx context.Context, ref, id, copyRef string) error {
	saved, err := d.cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer saved.Close()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(rewriteVolumeFree(saved, pw, id, copyRef)) }()
	res, err := d.cli.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return fmt.Errorf("load: %w", err)
	}
	defer res.Close()
	err = readMessages(res, nil)
	pr.CloseWithError(io.ErrClosedPipe)
	return err
}

// rewriteVolumeFree copies a saved image archive from r to w with its
// config's volumes dropped (under the config's new digest), labelled as the
// copy of image id, and tagged copyRef.
func rewriteVolumeFree(r io.Reader, w io.Writer, id, copyRef string) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	renamed := map[string]string{} // old config file -> new
	var manifest []byte
	var dirsLayer string // the archive's path of the layer of directories
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		switch {
		case name == "manifest.json":
			if manifest, err = io.ReadAll(io.LimitReader(tr, 1<<20)); err != nil {
				return err
			}
		case name == "repositories":
			// Its tags are the image's, not the copy's: left out.
		case !strings.Contains(name, "/") && strings.HasSuffix(name, ".json"):
			b, err := io.ReadAll(io.LimitReader(tr, 16<<20))
			if err != nil {
				return err
			}
			var cfg map[string]any
			if err := json.Unmarshal(b, &cfg); err != nil {
				return fmt.Errorf("image config %s: %w", name, err)
			}
			if c, ok := cfg["config"].(map[string]any); ok {
				vols, _ := c["Volumes"].(map[string]any)
				layer, err := dirLayer(vols)
				if err != nil {
					return err
				}
				sum := sha256.Sum256(layer)
				diffID := "sha256:" + hex.EncodeToString(sum[:])
				dirsLayer = hex.EncodeToString(sum[:]) + "/layer.tar"
				if err := put(dirsLayer, layer); err != nil {
					return err
				}
				rootfs, _ := cfg["rootfs"].(map[string]any)
				if rootfs == nil {
					return fmt.Errorf("image config %s has no rootfs", name)
				}
				ids, _ := rootfs["diff_ids"].([]any)
				rootfs["diff_ids"] = append(ids, diffID)
				hist, _ := cfg["history"].([]any)
				cfg["history"] = append(hist, map[string]any{"created_by": "bothy: the directories of the image's VOLUMEs, which are not volumes here"})
				delete(c, "Volumes")
				labels, _ := c["Labels"].(map[string]any)
				if labels == nil {
					labels = map[string]any{}
				}
				labels[LabelVolumeFreeOf] = id
				c["Labels"] = labels
			}
			if c, ok := cfg["container_config"].(map[string]any); ok {
				delete(c, "Volumes")
			}
			nb, err := json.Marshal(cfg)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(nb)
			newName := hex.EncodeToString(sum[:]) + ".json"
			renamed[name] = newName
			if err := put(newName, nb); err != nil {
				return err
			}
		default:
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return err
			}
		}
	}
	var m []map[string]any
	if err := json.Unmarshal(manifest, &m); err != nil || len(m) != 1 {
		return fmt.Errorf("the saved image's manifest: %v", err)
	}
	old, _ := m[0]["Config"].(string)
	nn, ok := renamed[path.Clean(old)]
	if !ok {
		return fmt.Errorf("the saved image's config %q is not in the archive", old)
	}
	m[0]["Config"] = nn
	m[0]["RepoTags"] = []string{copyRef}
	layers, _ := m[0]["Layers"].([]any)
	m[0]["Layers"] = append(layers, dirsLayer)
	mb, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := put("manifest.json", mb); err != nil {
		return err
	}
	return tw.Close()
}

// dirLayer is a layer that makes the directories vols names (the keys of
// an image config's Volumes), and their parents, as root with mode 0755.
func dirLayer(vols map[string]any) ([]byte, error) {
	seen := map[string]bool{}
	var dirs []string
	for v := range vols {
		for p := path.Clean("/" + v); p != "/"; p = path.Dir(p) {
			if !seen[p] {
				seen[p] = true
				dirs = append(dirs, p)
			}
		}
	}
	sort.Strings(dirs) // parents first
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
