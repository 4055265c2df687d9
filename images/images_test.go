package images

import (
	"context"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
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
