package testenv

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/agent/server"
	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/fake"
)

// FakeEngine is the in-memory engine with image, whose started containers
// each run a sandbox agent in this test process: it dials the socket in the
// container's run directory mount, as the real agent does from inside its
// container, so an orchestrator sees a sandbox come up as on a real engine.
// The agent works on this host's files, as this process's user. On the
// network transport it listens on the container's address instead (one of
// this host's loopback addresses).
func FakeEngine(t testing.TB, image string) *fake.Engine {
	log := Logger(t)
	e := fake.New(runtime.EngineInfo{})
	e.AddImage(runtime.Image{Tags: []string{image}})
	e.Boot = func(ctx context.Context, spec runtime.Spec, addr string) int {
		for _, m := range spec.Mounts {
			if m.Target == wire.RunMount {
				socket := filepath.Join(m.Source, wire.SocketName)
				token, err := server.ReadToken(socket)
				if err != nil {
					return 2
				}
				srv := server.NewServer(log)
				defer srv.Close()
				if server.Networked(socket) {
					// On the container's own loopback address, as the
					// agent listens on its container's.
					if err := server.ListenTLS(ctx, addr, socket, token, srv, log); err != nil {
						return 2
					}
					return 0
				}
				server.Dial(ctx, socket, token, srv, log)
				return 0
			}
		}
		return 2
	}
	return e
}

// FakeImages has Image, for everyone: the images of an orchestrator on
// FakeEngine. Any other is invalid.
type FakeImages struct{ Image string }

// EnsureFor answers Image, and refuses any other reference.
func (f FakeImages) EnsureFor(_ context.Context, _, ref string, _ func(string)) (runtime.Image, error) {
	if ref != f.Image {
		return runtime.Image{}, cerrdefs.ErrInvalidArgument.WithMessage("no image " + ref)
	}
	return runtime.Image{ID: "sha256:fake", Tags: []string{f.Image}}, nil
}
