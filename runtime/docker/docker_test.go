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

func TestDockerPassesTheConformanceSuite(t *testing.T) {
	d := testenv.Docker(t)
	ctx := context.Background()
	data := testenv.DataDir(t)
	b := images.New(d, testenv.Logger(t), "", filepath.Join(data, "build"))
	t.Cleanup(b.Close)
	if _, err := b.Ensure(ctx, images.Busybox, nil); err != nil {
		t.Fatal(err)
	}
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
