package docker_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/conformance"
	"github.com/bothy/bothy/runtime/docker"
)

var _ conformance.Engine = (*docker.Docker)(nil)

// withBusybox is the engine with the busybox image built, and the
// test's data directory.
func withBusybox(t *testing.T) (*docker.Docker, string) {
	t.Helper()
	d := testenv.Docker(t)
	data := testenv.DataDir(t)
	b := images.New(d, testenv.Logger(t), "", filepath.Join(data, "build"))
	t.Cleanup(b.Close)
	if _, err := b.Ensure(context.Background(), images.Busybox, nil); err != nil {
		t.Fatal(err)
	}
	return d, data
}

func TestDockerPassesTheConformanceSuite(t *testing.T) {
	d, data := withBusybox(t)
	ctx := context.Background()
	instance := "conf-" + filepath.Base(data)
	conformance.Run(t, conformance.Setup{Engine: d, Image: images.Busybox, Instance: instance, Bridge: "btyconf0"})
	left, err := d.List(ctx, map[string]string{runtime.LabelInstance: instance})
	if err != nil {
		t.Fatal(err)
	}
	nets, err := d.Networks(ctx, map[string]string{runtime.LabelInstance: instance})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 || len(nets) > 0 {
		t.Fatalf("left behind: %d containers, networks %v", len(left), nets)
	}
}
