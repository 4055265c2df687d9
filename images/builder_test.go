package images

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// memEngine keeps images in memory: enough for the builder's own logic.
// remote, when not nil, is a registry: what is pushed goes there, and pulls
// come from there.
type memEngine struct {
	mu     sync.Mutex
	images map[string]runtime.Image
	remote map[string]runtime.Image
	builds int
}

func (e *memEngine) ImageInspect(_ context.Context, ref string) (runtime.Image, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	img, ok := e.images[ref]
	if !ok {
		return runtime.Image{}, cerrdefs.ErrNotFound
	}
	return img, nil
}

func (e *memEngine) ImageList(context.Context) ([]runtime.Image, error) { return nil, nil }

func (e *memEngine) ImageImport(_ context.Context, rootfs io.Reader, ref string, _ []string) error {
	_, _ = io.Copy(io.Discard, rootfs)
	e.add(ref)
	return nil
}

func (e *memEngine) ImageBuild(_ context.Context, _ string, ref string, progress func(string)) error {
	progress("step of " + ref)
	e.add(ref)
	return nil
}

func (e *memEngine) ImagePull(_ context.Context, ref string, _ func(string)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	img, ok := e.remote[ref]
	if !ok {
		return cerrdefs.ErrNotFound
	}
	e.images[ref] = img
	return nil
}

func (e *memEngine) ImageRemove(_ context.Context, ref string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.images, ref)
	return nil
}

func (e *memEngine) ImageTag(_ context.Context, source, target string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	img, ok := e.images[source]
	if !ok {
		return cerrdefs.ErrNotFound
	}
	e.images[target] = img
	return nil
}

func (e *memEngine) ImagePush(_ context.Context, ref string, _ func(string)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	img, ok := e.images[ref]
	if !ok || e.remote == nil {
		return cerrdefs.ErrNotFound
	}
	e.remote[ref] = img
	return nil
}

func (e *memEngine) add(ref string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.builds++
	labels := map[string]string{}
	if r, ok := recipes[ref]; ok {
		labels[runtime.LabelRecipe] = r.hash()
	}
	e.images[ref] = runtime.Image{ID: "sha256:" + ref, Tags: []string{ref}, Labels: labels}
}

// records keeps the log records a handler is given.
type records struct {
	mu  sync.Mutex
	got []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

// TestBuildProgressIsLoggedOnce: three images built on one parent, ensured
// at once, log each line of the parent's build once, under the parent's
// name, while the callers still hear the lines of what they wait for.
func TestBuildProgressIsLoggedOnce(t *testing.T) {
	parent := recipe{name: "test/parent:latest", spec: "parent", build: func(_ context.Context, _ *Builder, _ string, progress func(string)) error {
		for _, step := range []string{"one", "two", "three"} {
			progress("parent " + step)
		}
		return nil
	}}
	recipes[parent.name] = parent
	children := []string{"test/a:latest", "test/b:latest", "test/c:latest"}
	for _, name := range children {
		recipes[name] = recipe{name: name, spec: name, from: parent.name}
	}
	t.Cleanup(func() {
		delete(recipes, parent.name)
		for _, name := range children {
			delete(recipes, name)
		}
	})
	logs := &records{}
	b := New(&memEngine{images: map[string]runtime.Image{}}, slog.New(logs), "", t.TempDir())
	defer b.Close()
	heard := make([][]string, len(children))
	var wg sync.WaitGroup
	for i, name := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mu sync.Mutex
			if _, err := b.Ensure(context.Background(), name, func(line string) { mu.Lock(); heard[i] = append(heard[i], line); mu.Unlock() }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	logged := map[string]int{}
	for _, rec := range logs.got {
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "step" {
				logged[a.Value.String()]++
			}
			return true
		})
	}
	for _, step := range []string{"parent one", "parent two", "parent three", "step of test/a:latest"} {
		if logged[step] != 1 {
			t.Errorf("%q logged %d times, want once (%v)", step, logged[step], logged)
		}
	}
	// Each caller hears its own image's build; those that waited for the
	// parent (at least the first) hear the parent's too.
	parentHeard := false
	for i, lines := range heard {
		all := strings.Join(lines, "\n")
		if !strings.Contains(all, "step of "+children[i]) {
			t.Errorf("%s's caller heard %q", children[i], lines)
		}
		parentHeard = parentHeard || strings.Contains(all, "parent two")
	}
	if !parentHeard {
		t.Errorf("no caller heard the parent's build: %q", heard)
	}
}

func TestRegistryKeepsWhatWasMade(t *testing.T) {
	remote := map[string]runtime.Image{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first := &memEngine{images: map[string]runtime.Image{Base: {ID: "sha256:base", Labels: map[string]string{runtime.LabelRecipe: recipes[Base].hash()}}}, remote: remote}
	b := New(first, log, "", t.TempDir())
	b.UseRegistry("registry.test:5000", RegistryAccess{})
	defer b.Close()
	if _, err := b.Ensure(context.Background(), RunnerPython, nil); err != nil {
		t.Fatal(err)
	}
	want := "registry.test:5000/bothy/runner-python:r-" + recipes[RunnerPython].hash()
	if b.RemoteRef(RunnerPython) != want {
		t.Fatalf("remote %q, want %q", b.RemoteRef(RunnerPython), want)
	}
	if _, ok := remote[want]; !ok {
		t.Fatalf("the build was not published: %v", remote)
	}
	if _, ok := first.images[want]; ok {
		t.Fatal("the pushed name stayed on the local image")
	}
	// A second host with an empty engine fetches it instead of building it.
	second := &memEngine{images: map[string]runtime.Image{}, remote: remote}
	b2 := New(second, log, "", t.TempDir())
	b2.UseRegistry("registry.test:5000", RegistryAccess{})
	defer b2.Close()
	img, err := b2.Ensure(context.Background(), RunnerPython, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.builds != 0 || img.Labels[runtime.LabelRecipe] != recipes[RunnerPython].hash() {
		t.Fatalf("builds %d, image %+v", second.builds, img)
	}
	// A snapshot's image is published and fetched under its own name;
	// an image bothy did not make is not.
	if b.RemoteRef("bothy/snapshot:snap-1") != "registry.test:5000/bothy/snapshot:snap-1" || b.RemoteRef("python:3") != "" {
		t.Fatalf("remote refs %q %q", b.RemoteRef("bothy/snapshot:snap-1"), b.RemoteRef("python:3"))
	}
	// Without a registry nothing is remote.
	if New(second, log, "", t.TempDir()).RemoteRef(Base) != "" {
		t.Fatal("a remote ref without a registry")
	}
}
