package images

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// Engine is what the builder needs of a container engine.
type Engine interface {
	ImageInspect(ctx context.Context, ref string) (runtime.Image, error)
	ImageList(ctx context.Context) ([]runtime.Image, error)
	ImageImport(ctx context.Context, rootfs io.Reader, ref string, changes []string) error
	ImageBuild(ctx context.Context, dockerfile, ref string, progress func(string)) error
	ImagePull(ctx context.Context, ref string, progress func(string)) error
	ImageRemove(ctx context.Context, ref string) error
	ImageTag(ctx context.Context, source, target string) error
	ImagePush(ctx context.Context, ref string, progress func(string)) error
}

// Builder ensures, builds, lists and removes images.
type Builder struct {
	eng     Engine
	log     *slog.Logger
	mirror  string
	scratch string
	// registry, when set, is where the images bothy makes are published
	// and fetched from (registry.go).
	registry string
	// remote reaches the registry itself, for what the engine cannot
	// do there (delete).
	remote *registryClient

	mu     sync.Mutex
	flight map[string]*flight
	// tags serialises pushes and pulls of one remote name (registry.go).
	tags tagLocks
	warm map[string]string // image -> "building", "ready" or "error: ..."
	// agent is the agent image (AgentImage); carriers are the registry's
	// copies of images with its layer on top, by image (withagent.go).
	agent    string
	carriers map[string]bool

	// Builds run on life, not on any caller's context, and stop at Close.
	life   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// flight is one build or pull in progress, shared by everyone ensuring that image.
type flight struct {
	done      chan struct{}
	err       error
	listeners []func(string)
}

// DefaultMirror is the Debian mirror base images come from unless told otherwise.
const DefaultMirror = "http://deb.debian.org/debian"

// New returns a builder that debootstraps from mirror (DefaultMirror when empty) and builds root filesystems
// under scratch (a directory on the host that sandboxes never see).
func New(eng Engine, log *slog.Logger, mirror, scratch string) *Builder {
	if mirror == "" {
		mirror = DefaultMirror
	}
	life, cancel := context.WithCancel(context.Background())
	return &Builder{eng: eng, log: log.With("component", "images"), mirror: mirror, scratch: scratch,
		flight: map[string]*flight{}, warm: map[string]string{}, life: life, cancel: cancel}
}

// Warm ensures refs in the background, so that the first sandbox does not wait
// for a build; Status reports how far each got. Close waits for them.
func (b *Builder) Warm(ctx context.Context, refs ...string) {
	seen := map[string]bool{}
	for _, ref := range refs {
		name := normalize(ref)
		if seen[name] {
			continue // the default image is often a built-in one
		}
		seen[name] = true
		b.setWarm(name, "building")
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			_, err := b.Ensure(ctx, name, nil)
			if err == nil {
				// An image made before a registry was configured is published now.
				err = b.Publish(ctx, name, nil)
			}
			if err != nil {
				b.log.Error("image not ready", "image", name, "err", err)
				b.setWarm(name, "error: "+err.Error())
				return
			}
			b.setWarm(name, "ready")
		}()
	}
}

func (b *Builder) setWarm(name, status string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.warm[name] = status
}

// Status reports the images Warm was asked for.
func (b *Builder) Status() map[string]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]string, len(b.warm))
	for k, v := range b.warm {
		out[k] = v
	}
	return out
}

// Close stops the builds in progress and waits for them.
func (b *Builder) Close() {
	b.cancel()
	b.wg.Wait()
}

// Ensure makes ref exist in the engine: an image bothy builds itself is built
// when missing or when its recipe changed; any other image is used when local
// and pulled otherwise. progress, when not nil, receives progress lines. An image
// that is neither local nor pullable is an invalid-argument error naming it.
func (b *Builder) Ensure(ctx context.Context, ref string, progress func(string)) (runtime.Image, error) {
	if ref == "" {
		return runtime.Image{}, cerrdefs.ErrInvalidArgument.WithMessage("image: empty reference")
	}
	name := normalize(ref)
	r, known := recipes[name]
	img, err := b.eng.ImageInspect(ctx, name)
	switch {
	case err == nil && (!known || img.Labels[runtime.LabelRecipe] == r.hash()):
		return img, nil
	case err != nil && !cerrdefs.IsNotFound(err):
		return runtime.Image{}, err
	}
	if err := b.share(ctx, name, progress, func(ctx context.Context, progress func(string)) error {
		// What bothy made, a registry may have: fetched, it is not made again.
		if b.fetch(ctx, name, progress) {
			return nil
		}
		if known {
			if err := b.build(ctx, r, progress); err != nil {
				return err
			}
			return b.publish(ctx, name, progress)
		}
		return b.eng.ImagePull(ctx, name, progress)
	}); err != nil {
		if known {
			return runtime.Image{}, fmt.Errorf("build image %s: %w", name, err)
		}
		return runtime.Image{}, cerrdefs.ErrInvalidArgument.WithMessage(
			fmt.Sprintf("image %q is not available locally and could not be pulled: %v", ref, err))
	}
	return b.eng.ImageInspect(ctx, name)
}

// Usable says whether the key owner may run img. An image that bothy made
// from one key's files carries that key as its owner and is that key's alone;
// one of the snapshot kind without an owner is nobody's.
func Usable(img runtime.Image, owner string) bool {
	if o, ok := img.Labels[runtime.LabelOwner]; ok {
		return o == owner
	}
	return img.Labels[runtime.LabelKind] != runtime.KindSnapshot
}

// EnsureFor is Ensure on behalf of the key owner: an image that owner may not
// use is refused exactly as a missing one is, so that its existence does not
// show either.
func (b *Builder) EnsureFor(ctx context.Context, owner, ref string, progress func(string)) (runtime.Image, error) {
	img, err := b.Ensure(ctx, ref, progress)
	if err == nil && !Usable(img, owner) {
		return runtime.Image{}, cerrdefs.ErrInvalidArgument.WithMessage(
			fmt.Sprintf("image %q is not available locally and could not be pulled", ref))
	}
	return img, err
}

// Build rebuilds an image bothy knows the recipe of, even when it exists.
func (b *Builder) Build(ctx context.Context, ref string, progress func(string)) (runtime.Image, error) {
	name := normalize(ref)
	r, ok := recipes[name]
	if !ok {
		return runtime.Image{}, cerrdefs.ErrInvalidArgument.WithMessage(
			fmt.Sprintf("no recipe for image %q; bothy builds %s", ref, strings.Join(Recipes(), ", ")))
	}
	if err := b.share(ctx, name, progress, func(ctx context.Context, progress func(string)) error {
		if err := b.build(ctx, r, progress); err != nil {
			return err
		}
		return b.publish(ctx, name, progress)
	}); err != nil {
		return runtime.Image{}, fmt.Errorf("build image %s: %w", name, err)
	}
	return b.eng.ImageInspect(ctx, name)
}

// Recipes lists the images bothy can build.
func Recipes() []string {
	out := make([]string, 0, len(recipes))
	for name := range recipes {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// Remove removes an image.
func (b *Builder) Remove(ctx context.Context, ref string) error {
	return b.eng.ImageRemove(ctx, normalize(ref))
}

// share runs fn once for name however many callers ask at the same time; each
// caller's progress function hears the lines, and each caller may stop waiting
// when its ctx is done. The work itself runs on the builder's own context.
func (b *Builder) share(ctx context.Context, name string, progress func(string), fn func(context.Context, func(string)) error) error {
	b.mu.Lock()
	f, ok := b.flight[name]
	if !ok {
		f = &flight{done: make(chan struct{})}
		b.flight[name] = f
	}
	if progress != nil {
		f.listeners = append(f.listeners, progress)
	}
	b.mu.Unlock()
	if !ok {
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			relay := func(line string) {
				b.mu.Lock()
				ls := append([]func(string){}, f.listeners...)
				b.mu.Unlock()
				for _, l := range ls {
					l(line)
				}
			}
			broadcast := func(line string) {
				b.log.Info("image build", "image", name, "step", line)
				relay(line)
			}
			f.err = fn(context.WithValue(b.life, relayOf{}, relay), broadcast)
			b.mu.Lock()
			delete(b.flight, name)
			b.mu.Unlock()
			close(f.done)
		}()
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// relayOf keys, in a build's context, the function that passes a line to
// the build's listeners without logging it.
type relayOf struct{}

// build makes the root filesystem of r in a scratch directory and imports it,
// then removes the image it replaced unless a container still uses it.
func (b *Builder) build(ctx context.Context, r recipe, progress func(string)) error {
	old, oldErr := b.eng.ImageInspect(ctx, r.name)
	if r.from != "" {
		if err := b.buildOnTop(ctx, r, progress); err != nil {
			return err
		}
		b.dropReplaced(ctx, r.name, old, oldErr)
		return nil
	}
	if err := os.MkdirAll(b.scratch, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(b.scratch, "rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	progress("building root filesystem for " + r.name)
	if err := r.build(ctx, b, dir, progress); err != nil {
		return err
	}
	// The archive's "." entry becomes the image's root directory on storage
	// drivers that keep its mode (btrfs does; overlay2 does not): it must not
	// be the scratch directory's 0700.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	progress("importing " + r.name)
	tar := exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", dir, "-cf", "-", ".")
	out, err := tar.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr strings.Builder
	tar.Stderr = &stderr
	if err := tar.Start(); err != nil {
		return fmt.Errorf("tar: %w", err)
	}
	changes := append([]string{
		fmt.Sprintf("LABEL %s=%s %s=%s", runtime.LabelRecipe, r.hash(), runtime.LabelKind, runtime.KindImage),
	}, r.changes...)
	ierr := b.eng.ImageImport(ctx, out, r.name, changes)
	if ierr != nil {
		_, _ = io.Copy(io.Discard, out)
	}
	if err := tar.Wait(); err != nil {
		return fmt.Errorf("tar: %w: %s", err, stderr.String())
	}
	if ierr != nil {
		return ierr
	}
	progress("built " + r.name)
	b.dropReplaced(ctx, r.name, old, oldErr)
	return nil
}

// buildOnTop builds r as Dockerfile steps on its parent image, which is
// ensured first.
func (b *Builder) buildOnTop(ctx context.Context, r recipe, progress func(string)) error {
	// The parent's build logs its own lines; this build's listeners hear
	// them, and they are not logged again under this image's name.
	parent, _ := ctx.Value(relayOf{}).(func(string))
	if _, err := b.Ensure(ctx, r.from, parent); err != nil {
		return err
	}
	lines := append([]string{"FROM " + r.from,
		fmt.Sprintf("LABEL %s=%s %s=%s", runtime.LabelRecipe, r.hash(), runtime.LabelKind, runtime.KindImage),
	}, r.changes...)
	progress("building " + r.name + " on " + r.from)
	if err := b.eng.ImageBuild(ctx, strings.Join(lines, "\n")+"\n", r.name, progress); err != nil {
		return err
	}
	progress("built " + r.name)
	return nil
}

// dropReplaced removes the image a build replaced, unless a container still
// uses it.
func (b *Builder) dropReplaced(ctx context.Context, name string, old runtime.Image, oldErr error) {
	if oldErr != nil {
		return
	}
	if img, err := b.eng.ImageInspect(ctx, name); err == nil && img.ID != old.ID {
		if err := b.eng.ImageRemove(ctx, old.ID); err != nil {
			b.log.Debug("keep replaced image", "image", old.ID, "err", err)
		}
	}
}

// runLogged runs a command, sending each line it prints to progress.
func runLogged(ctx context.Context, progress func(string), name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var last []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			progress(sc.Text())
			last = append(last, sc.Text())
			if len(last) > 5 {
				last = last[1:]
			}
		}
	}()
	err := cmd.Wait()
	pw.Close()
	<-done
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.Join(last, " | "))
	}
	return nil
}
