package images

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"bothy/base":               "bothy/base:latest",
		"bothy/base:latest":        "bothy/base:latest",
		"localhost:5000/x":         "localhost:5000/x:latest",
		"localhost:5000/x:1":       "localhost:5000/x:1",
		"alpine@sha256:0123456789": "alpine@sha256:0123456789",
	} {
		if got := normalize(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnsureBusyboxOnce(t *testing.T) {
	d := testenv.Docker(t)
	b := New(d, testenv.Logger(t), "http://deb.debian.org/debian", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var lines int
	img, err := b.Ensure(ctx, "bothy/busybox", func(string) { lines++ })
	if err != nil {
		t.Fatal(err)
	}
	if img.Labels[runtime.LabelRecipe] != recipes[Busybox].hash() {
		t.Fatalf("recipe label %q, want %q", img.Labels[runtime.LabelRecipe], recipes[Busybox].hash())
	}
	// A second ensure finds it and builds nothing.
	lines = 0
	again, err := b.Ensure(ctx, Busybox, func(string) { lines++ })
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != img.ID || lines != 0 {
		t.Fatalf("rebuilt an unchanged recipe: %s -> %s, %d progress lines", img.ID, again.ID, lines)
	}
}

func TestEnsureUnknownImageIsInvalidArgument(t *testing.T) {
	d := testenv.Docker(t)
	b := New(d, testenv.Logger(t), "", t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := b.Ensure(ctx, "no-such-image-bothy-test:v0", nil)
	if !cerrdefs.IsInvalidArgument(err) {
		t.Fatalf("want invalid argument, got %v", err)
	}
	t.Log(err)
}

// publishedBusybox is a builder publishing to a registry of the test's own
// (Debian's, on loopback), and bothy/busybox made and published there.
func publishedBusybox(t *testing.T) (*docker.Docker, string, *Builder, runtime.Image) {
	t.Helper()
	d := testenv.Docker(t)
	reg := testenv.Registry(t)
	b := New(d, testenv.Logger(t), "http://deb.debian.org/debian", t.TempDir())
	b.UseRegistry(reg, RegistryAccess{})
	t.Cleanup(b.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	busybox, err := b.Ensure(ctx, Busybox, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, Busybox, nil); err != nil {
		t.Fatal(err)
	}
	return d, reg, b, busybox
}

// TestRegistryOnTheEngine: with a registry (Debian's, on loopback), what
// bothy makes is pushed under its remote name, and an image bothy made that
// the engine lacks is pulled from there instead of being made again.
func TestRegistryOnTheEngine(t *testing.T) {
	d, reg, b, busybox := publishedBusybox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if tags := testenv.RegistryTags(t, reg, "bothy/busybox"); !slices.Contains(tags, "r-"+recipes[Busybox].hash()) {
		t.Fatalf("the registry holds %v of bothy/busybox", tags)
	}
	// An image of bothy's that is not a recipe's (as a snapshot's is):
	// published, removed here, and fetched back by Ensure.
	ref := "bothy/snapshot:registry-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := d.ImageTag(ctx, Busybox, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.ImageRemove(context.Background(), ref) })
	if err := b.Publish(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if err := d.ImageRemove(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
		t.Fatalf("the image is still here: %v", err)
	}
	got, err := b.Ensure(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != busybox.ID {
		t.Fatalf("fetched %s, want %s", got.ID, busybox.ID)
	}
	// The remote names were only the push's and the pull's.
	for _, remote := range []string{b.RemoteRef(Busybox), b.RemoteRef(ref)} {
		if _, err := d.ImageInspect(ctx, remote); !cerrdefs.IsNotFound(err) {
			t.Errorf("%s is still a local name: %v", remote, err)
		}
	}
}

// TestWithAgentInTheRegistry: the registry's copy of a published image with
// the agent image's layer on top is made there from the layers it already
// holds: the engine pulls it, with the image's layers and the agent's
// after; asked again, it is the same; a snapshot's copy goes with the
// snapshot's. Where there is nothing to put on top, or no copy of bothy's
// to put it on, there is none.
func TestWithAgentInTheRegistry(t *testing.T) {
	d, reg, b, busybox := publishedBusybox(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if ref, err := b.WithAgent(ctx, Busybox); err != nil || ref != "" {
		t.Fatalf("with no agent image: %q %v", ref, err)
	}
	agent, err := b.AgentImage(ctx, testenv.AgentBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, agent, nil); err != nil {
		t.Fatal(err)
	}
	if ref, err := b.WithAgent(ctx, "debian:12"); err != nil || ref != "" {
		t.Fatalf("an image bothy did not make: %q %v", ref, err)
	}
	carrier, err := b.WithAgent(ctx, Busybox)
	_, tag, _ := strings.Cut(agent, ":")
	if err != nil || !strings.HasPrefix(carrier, b.RemoteRef(Busybox)+"-agent-"+tag+"-") {
		t.Fatalf("with the agent: %q %v", carrier, err)
	}
	if again, err := b.WithAgent(ctx, Busybox); err != nil || again != carrier {
		t.Fatalf("again: %q %v", again, err)
	}
	if err := d.ImagePull(ctx, carrier, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.ImageRemove(context.Background(), carrier) })
	got, err := d.ImageInspect(ctx, carrier)
	if err != nil {
		t.Fatal(err)
	}
	top, err := d.ImageInspect(ctx, agent)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(slices.Clone(busybox.Layers), top.Layers...); !slices.Equal(got.Layers, want) {
		t.Fatalf("layers %v, want %v", got.Layers, want)
	}

	// A snapshot's copy, and the copy with the agent, go with it.
	ref := "bothy/snapshot:with-agent-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := d.ImageTag(ctx, Busybox, ref); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.ImageRemove(context.Background(), ref) })
	if err := b.Publish(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WithAgent(ctx, ref); err != nil {
		t.Fatal(err)
	}
	_, snapTag, _ := strings.Cut(ref, ":")
	if tags := testenv.RegistryTags(t, reg, "bothy/snapshot"); len(tags) != 2 || !slices.Contains(tags, snapTag) ||
		!slices.ContainsFunc(tags, func(s string) bool { return strings.HasPrefix(s, snapTag+"-agent-"+tag+"-") }) {
		t.Fatalf("the snapshot's tags: %v", tags)
	}
	if err := b.Unpublish(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if tags := testenv.RegistryTags(t, reg, "bothy/snapshot"); len(tags) != 0 {
		t.Fatalf("after unpublish: %v", tags)
	}
}
