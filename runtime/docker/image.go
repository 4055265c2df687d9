package docker

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/client"

	"github.com/bothy/bothy/runtime"
)

// ImageInspect reports one local image by reference or ID.
func (d *Docker) ImageInspect(ctx context.Context, ref string) (runtime.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	res, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		return runtime.Image{}, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	img := runtime.Image{ID: res.ID, Tags: res.RepoTags, Size: res.Size, Layers: res.RootFS.Layers}
	if res.Config != nil {
		img.Labels = res.Config.Labels
		img.Config = runtime.ImageConfig{Env: res.Config.Env, Cmd: res.Config.Cmd,
			WorkingDir: res.Config.WorkingDir, User: res.Config.User}
	}
	img.Created, _ = time.Parse(time.RFC3339Nano, res.Created)
	return img, nil
}

// ImageList reports every tagged local image.
func (d *Docker) ImageList(ctx context.Context) ([]runtime.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	res, err := d.cli.ImageList(ctx, client.ImageListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []runtime.Image
	for _, s := range res.Items {
		if len(s.RepoTags) == 0 || s.RepoTags[0] == "<none>:<none>" {
			continue
		}
		out = append(out, runtime.Image{
			ID: s.ID, Tags: s.RepoTags, Labels: s.Labels, Size: s.Size, Created: time.Unix(s.Created, 0),
		})
	}
	return out, nil
}

// ImagesLabelled lists every image that carries label ("key" or
// "key=value"), untagged ones included.
func (d *Docker) ImagesLabelled(ctx context.Context, label string) ([]runtime.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	res, err := d.cli.ImageList(ctx, client.ImageListOptions{All: true, Filters: client.Filters{}.Add("label", label)})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]runtime.Image, 0, len(res.Items))
	for _, s := range res.Items {
		out = append(out, runtime.Image{ID: s.ID, Tags: s.RepoTags, Labels: s.Labels, Size: s.Size, Created: time.Unix(s.Created, 0)})
	}
	return out, nil
}

// ImageImport makes an image named ref from a root filesystem tarball, applying
// Dockerfile-style changes (LABEL, ENV, WORKDIR...).
func (d *Docker) ImageImport(ctx context.Context, rootfs io.Reader, ref string, changes []string) error {
	res, err := d.cli.ImageImport(ctx, client.ImageImportSource{Source: rootfs, SourceName: "-"}, ref, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	defer res.Close()
	return readMessages(res, nil)
}

// ImageBuild builds ref from a Dockerfile with no other build context (its
// FROM image must be local), reporting the build's output lines.
func (d *Docker) ImageBuild(ctx context.Context, dockerfile, ref string, progress func(string)) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(dockerfile))}); err != nil {
		return err
	}
	if _, err := tw.Write([]byte(dockerfile)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := d.cli.ImageBuild(ctx, &buf, client.ImageBuildOptions{
		Tags: []string{ref}, Remove: true, ForceRemove: true, NetworkMode: "none",
	})
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	defer res.Body.Close()
	if err := readMessages(res.Body, progress); err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	return nil
}

// ImagePull pulls ref from its registry, reporting progress lines.
func (d *Docker) ImagePull(ctx context.Context, ref string, progress func(string)) error {
	res, err := d.cli.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: d.authFor(ref)})
	if err != nil {
		return fmt.Errorf("pull image %s: %w", ref, err)
	}
	defer res.Close()
	if err := readMessages(res, progress); err != nil {
		return fmt.Errorf("pull image %s: %w", ref, err)
	}
	return nil
}

// ImageRemove removes a local image.
func (d *Docker) ImageRemove(ctx context.Context, ref string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	// PruneChildren, as `docker rmi` does: an untagged parent that only this
	// image held (a snapshot deleted while a child built on it) goes too.
	if _, err := d.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// readMessages drains a stream of the engine's JSON progress messages, returning
// the first error message in it.
func readMessages(r io.Reader, progress func(string)) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Status   string `json:"status"`
			Stream   string `json:"stream"`
			Progress string `json:"progress"`
			ID       string `json:"id"`
			Error    string `json:"error"`
			Detail   struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if m.Error != "" {
			return fmt.Errorf("%s", m.Error)
		}
		if line := strings.TrimSpace(m.Stream); progress != nil && line != "" {
			progress(line)
		}
		if progress != nil && m.Status != "" {
			line := m.Status
			if m.ID != "" {
				line = m.ID + ": " + line
			}
			if m.Progress != "" {
				line += " " + m.Progress
			}
			progress(line)
		}
	}
}

// ImageSave streams ref as the engine's image archive (docker save).
func (d *Docker) ImageSave(ctx context.Context, ref string) (io.ReadCloser, error) {
	res, err := d.cli.ImageSave(ctx, []string{ref})
	if err != nil {
		return nil, fmt.Errorf("save image %s: %w", ref, err)
	}
	return res, nil
}

// ImageLoad loads an image archive (docker load).
func (d *Docker) ImageLoad(ctx context.Context, r io.Reader) error {
	res, err := d.cli.ImageLoad(ctx, r, client.ImageLoadWithQuiet(true))
	if err != nil {
		return fmt.Errorf("load image: %w", err)
	}
	defer res.Close()
	return readMessages(res, nil)
}
