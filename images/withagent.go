package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"

	"github.com/bothy/bothy/agent/wire"
)

// dockerManifest is the media type of the manifests the engine pushes.
const dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"

// maxManifest bounds a manifest or image configuration read from the
// registry.
const maxManifest = 4 << 20

func (b *Builder) setAgent(ref string) {
	b.mu.Lock()
	b.agent = ref
	b.mu.Unlock()
}

// carrierRef is the registry's name of remote, whose manifest is base,
// with the agent of tag agentTag on top: a base pushed again under the same
// name has a copy of its own.
func carrierRef(remote string, base digest.Digest, agentTag string) string {
	return remote + "-agent-" + agentTag + "-" + base.Encoded()[:12]
}

// WithAgent is the registry's copy of ref with the agent image's one layer
// on top (the agent binary at wire.BinaryPath), made there once, from the
// layers already there: a pod runs the agent from its own image, with no
// init container to copy it in. It is "" where there is no such copy to
// make: no registry, no agent image, an image bothy did not publish, or a
// manifest of another kind than one image's. Call it after ref is
// published.
func (b *Builder) WithAgent(ctx context.Context, ref string) (string, error) {
	b.mu.Lock()
	agent := b.agent
	b.mu.Unlock()
	from, agentRemote := b.RemoteRef(normalize(ref)), b.RemoteRef(agent)
	if from == "" || agentRemote == "" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	src, err := b.remote.repo(from)
	if err != nil {
		return "", err
	}
	base, err := src.Resolve(ctx, src.Reference.Reference)
	if err != nil {
		return "", err
	}
	_, agentTag, _ := strings.Cut(agent, ":")
	to := carrierRef(from, base.Digest, agentTag)
	b.mu.Lock()
	done := b.carriers[to]
	b.mu.Unlock()
	if done {
		return to, nil
	}
	made, err := b.remote.addLayer(ctx, src, to, agentRemote)
	if err != nil || !made {
		return "", err
	}
	b.mu.Lock()
	if b.carriers == nil {
		b.carriers = map[string]bool{}
	}
	b.carriers[to] = true
	b.mu.Unlock()
	return to, nil
}

// carrierOf is the name of the copy with the agent of remote as the
// registry holds it now; "" when there is no agent image, or no remote.
func (b *Builder) carrierOf(ctx context.Context, remote string) (string, error) {
	b.mu.Lock()
	agent := b.agent
	b.mu.Unlock()
	if agent == "" {
		return "", nil
	}
	repo, err := b.remote.repo(remote)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, registryTimeout)
	defer cancel()
	base, err := repo.Resolve(ctx, repo.Reference.Reference)
	if errors.Is(err, errdef.ErrNotFound) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	_, agentTag, _ := strings.Cut(agent, ":")
	to := carrierRef(remote, base.Digest, agentTag)
	b.mu.Lock()
	delete(b.carriers, to)
	b.mu.Unlock()
	return to, nil
}

// image is one image's manifest and configuration as the registry keeps
// them: the fields bothy reads, and the whole of each, so that what it
// writes back keeps every field it does not know.
type image struct {
	desc     ocispec.Descriptor
	manifest ocispec.Manifest
	rawMan   map[string]json.RawMessage
	config   struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	rawConfig map[string]json.RawMessage
}

// errNotOneImage: a manifest of another kind than one image's (a list of
// platforms, an artifact).
var errNotOneImage = errors.New("not one image's manifest")

// fetchImage reads the manifest and configuration repo's reference names.
func fetchImage(ctx context.Context, repo *remote.Repository) (*image, error) {
	desc, rc, err := repo.FetchReference(ctx, repo.Reference.Reference)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if desc.MediaType != dockerManifest && desc.MediaType != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("%s: %w (%s)", repo.Reference, errNotOneImage, desc.MediaType)
	}
	if desc.Size > maxManifest {
		return nil, fmt.Errorf("%s: a manifest of %d bytes", repo.Reference, desc.Size)
	}
	raw, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, err
	}
	img := &image{desc: desc}
	if err := json.Unmarshal(raw, &img.manifest); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &img.rawMan); err != nil {
		return nil, err
	}
	if img.manifest.Config.Size > maxManifest {
		return nil, fmt.Errorf("%s: a configuration of %d bytes", repo.Reference, img.manifest.Config.Size)
	}
	cfg, err := content.FetchAll(ctx, repo, img.manifest.Config)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(cfg, &img.config); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(cfg, &img.rawConfig); err != nil {
		return nil, err
	}
	if len(img.config.RootFS.DiffIDs) != len(img.manifest.Layers) {
		return nil, fmt.Errorf("%s: %d layers and %d diff IDs", repo.Reference, len(img.manifest.Layers), len(img.config.RootFS.DiffIDs))
	}
	return img, nil
}

// addLayer makes to (HOST/NAME:TAG, of src's repository) src's image with
// the one layer of the image layerOf on top; false, with no error, when
// from is not one image. The layer's blob is mounted from layerOf's
// repository: nothing is uploaded but two small documents. What it makes
// depends on its inputs alone, so two bothys making it at once agree. A tag
// to that exists is taken as made: its name holds the digests of both.
func (r *registryClient) addLayer(ctx context.Context, src *remote.Repository, to, layerOf string) (bool, error) {
	dst, err := r.repo(to)
	if err != nil {
		return false, err
	}
	if _, err := dst.Resolve(ctx, dst.Reference.Reference); err == nil {
		return true, nil
	} else if !errors.Is(err, errdef.ErrNotFound) {
		return false, err
	}
	lrepo, err := r.repo(layerOf)
	if err != nil {
		return false, err
	}
	base, err := fetchImage(ctx, src)
	if errors.Is(err, errNotOneImage) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	top, err := fetchImage(ctx, lrepo)
	if err != nil {
		return false, err
	}
	if len(top.manifest.Layers) != 1 {
		return false, fmt.Errorf("%s: %d layers, not one", layerOf, len(top.manifest.Layers))
	}
	layer := top.manifest.Layers[0]
	if err := dst.Mount(ctx, layer, lrepo.Reference.Repository, nil); err != nil {
		return false, fmt.Errorf("mount the agent's layer into %s: %w", dst.Reference.Repository, err)
	}

	rootfs, err := json.Marshal(map[string]any{"type": "layers", "diff_ids": append(base.config.RootFS.DiffIDs, top.config.RootFS.DiffIDs[0])})
	if err != nil {
		return false, err
	}
	base.rawConfig["rootfs"] = rootfs
	// A history, where there is one, tells of every layer.
	if h, ok := base.rawConfig["history"]; ok {
		var history []json.RawMessage
		if err := json.Unmarshal(h, &history); err != nil {
			return false, err
		}
		step, _ := json.Marshal(map[string]string{"created_by": "bothy: the agent at " + wire.BinaryPath})
		if base.rawConfig["history"], err = json.Marshal(append(history, step)); err != nil {
			return false, err
		}
	}
	cfg, err := json.Marshal(base.rawConfig)
	if err != nil {
		return false, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: base.manifest.Config.MediaType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if err := dst.Push(ctx, cfgDesc, bytes.NewReader(cfg)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return false, fmt.Errorf("push the configuration of %s: %w", to, err)
	}

	configJSON, _ := json.Marshal(cfgDesc)
	layersJSON, _ := json.Marshal(append(base.manifest.Layers, layer))
	base.rawMan["config"], base.rawMan["layers"] = configJSON, layersJSON
	man, err := json.Marshal(base.rawMan)
	if err != nil {
		return false, err
	}
	manDesc := ocispec.Descriptor{MediaType: base.desc.MediaType, Digest: digest.FromBytes(man), Size: int64(len(man))}
	if err := dst.PushReference(ctx, manDesc, bytes.NewReader(man), dst.Reference.Reference); err != nil {
		return false, fmt.Errorf("push %s: %w", to, err)
	}
	return true, nil
}
