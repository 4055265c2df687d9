// Package conformance is the one suite every container engine behind
// bothy passes: the Docker adapter and the in-memory fake alike. It pins
// down what the orchestrator relies on: container states and their
// transitions, label filters, error classes, networks.
package conformance

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// Engine is the part of an engine the suite checks.
type Engine interface {
	Create(ctx context.Context, spec runtime.Spec) (string, error)
	Start(ctx context.Context, id string) error
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	Rename(ctx context.Context, id, name string) error
	Inspect(ctx context.Context, id string) (runtime.Container, error)
	List(ctx context.Context, labels map[string]string) ([]runtime.Container, error)
	EnsureNetwork(ctx context.Context, spec runtime.NetworkSpec) error
	RemoveNetwork(ctx context.Context, name string) error
	Networks(ctx context.Context, labels map[string]string) ([]string, error)
	Info(ctx context.Context) (runtime.EngineInfo, error)
}

// Setup is what the suite is given of the engine under test.
type Setup struct {
	Engine Engine
	// Image has a "sleep" program: the suite's containers run "sleep 600".
	Image string
	// Instance labels everything the suite makes (runtime.LabelInstance),
	// so that the caller can check that nothing is left.
	Instance string
	// Bridge is a host interface name free for the suite's network.
	Bridge string
	// NoPause: the engine cannot pause a container, and says so (not
	// implemented) instead.
	NoPause bool
	// LateImageCheck: the engine learns that an image is missing when it
	// starts a container of it, not when it creates one (a cluster that
	// pulls on the node).
	LateImageCheck bool
}

// Run runs the suite. Every container and network it makes is removed
// before it returns.
func Run(t *testing.T, s Setup) {
	ctx := context.Background()
	labels := func(extra ...string) map[string]string {
		l := map[string]string{runtime.LabelInstance: s.Instance}
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	create := func(t *testing.T, spec runtime.Spec) string {
		t.Helper()
		if spec.Image == "" {
			spec.Image = s.Image
		}
		spec.Entrypoint = []string{"sleep", "600"}
		spec.Network = "none"
		spec.StopTimeout = time.Second
		id, err := s.Engine.Create(ctx, spec)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		t.Cleanup(func() { _ = s.Engine.Remove(context.Background(), id) })
		return id
	}
	state := func(t *testing.T, id string, want runtime.State) {
		t.Helper()
		c, err := s.Engine.Inspect(ctx, id)
		if err != nil {
			t.Fatalf("inspect: %v", err)
		}
		if c.State != want {
			t.Fatalf("state %s, want %s", c.State, want)
		}
	}
	must := func(t *testing.T, what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	t.Run("Lifecycle", func(t *testing.T) {
		name := "conf-" + s.Instance + "-life"
		id := create(t, runtime.Spec{Name: name, Labels: labels("role", "life")})
		c, err := s.Engine.Inspect(ctx, id)
		must(t, "inspect", err)
		if c.ID != id || c.Name != name || c.Image != s.Image || c.State != runtime.StateCreated ||
			c.Labels["role"] != "life" || c.Labels[runtime.LabelInstance] != s.Instance || c.Created.IsZero() {
			t.Fatalf("created container = %+v", c)
		}
		if byName, err := s.Engine.Inspect(ctx, name); err != nil || byName.ID != id {
			t.Fatalf("inspect by name: %+v, %v", byName, err)
		}
		must(t, "start", s.Engine.Start(ctx, id))
		state(t, id, runtime.StateRunning)
		if c, err := s.Engine.Inspect(ctx, id); err != nil || c.Addr != "" {
			t.Fatalf("a container without a network has an address: %q %v", c.Addr, err)
		}
		must(t, "start a running container", s.Engine.Start(ctx, id))
		if s.NoPause {
			if err := s.Engine.Pause(ctx, id); !cerrdefs.IsNotImplemented(err) {
				t.Fatalf("pause: %v, want not implemented", err)
			}
			state(t, id, runtime.StateRunning)
		} else {
			must(t, "pause", s.Engine.Pause(ctx, id))
			state(t, id, runtime.StatePaused)
			if err := s.Engine.Start(ctx, id); err == nil {
				t.Fatal("start of a paused container succeeded")
			}
			must(t, "unpause", s.Engine.Unpause(ctx, id))
			state(t, id, runtime.StateRunning)
		}
		must(t, "stop", s.Engine.Stop(ctx, id, time.Second))
		state(t, id, runtime.StateExited)
		must(t, "stop a stopped container", s.Engine.Stop(ctx, id, time.Second))
		must(t, "start again", s.Engine.Start(ctx, id))
		state(t, id, runtime.StateRunning)
		must(t, "remove a running container", s.Engine.Remove(ctx, id))
		if _, err := s.Engine.Inspect(ctx, id); !cerrdefs.IsNotFound(err) {
			t.Fatalf("inspect after remove: %v, want not found", err)
		}
		// The name is free again.
		again := create(t, runtime.Spec{Name: name, Labels: labels()})
		// A rename frees the old name and takes the new one.
		must(t, "rename", s.Engine.Rename(ctx, again, name+"-renamed"))
		if c, err := s.Engine.Inspect(ctx, name+"-renamed"); err != nil || c.ID != again || c.Name != name+"-renamed" {
			t.Fatalf("inspect by the new name: %+v, %v", c, err)
		}
		if _, err := s.Engine.Inspect(ctx, name); !cerrdefs.IsNotFound(err) {
			t.Fatalf("inspect by the old name: %v, want not found", err)
		}
		create(t, runtime.Spec{Name: name, Labels: labels()})
		if err := s.Engine.Rename(ctx, again, name); !cerrdefs.IsConflict(err) {
			t.Fatalf("rename to a name in use: %v, want conflict", err)
		}
	})

	t.Run("ErrorClasses", func(t *testing.T) {
		const missing = "0000000000000000000000000000000000000000000000000000000000000000"
		for what, err := range map[string]error{
			"inspect": func() error { _, err := s.Engine.Inspect(ctx, missing); return err }(),
			"start":   s.Engine.Start(ctx, missing),
			"stop":    s.Engine.Stop(ctx, missing, time.Second),
			"pause":   s.Engine.Pause(ctx, missing),
			"remove":  s.Engine.Remove(ctx, missing),
		} {
			if !cerrdefs.IsNotFound(err) {
				t.Errorf("%s of a missing container: %v, want not found", what, err)
			}
		}
		name := "conf-" + s.Instance + "-dup"
		id := create(t, runtime.Spec{Name: name, Labels: labels()})
		if _, err := s.Engine.Create(ctx, runtime.Spec{Name: name, Image: s.Image, Labels: labels(), Network: "none"}); !cerrdefs.IsConflict(err) {
			t.Errorf("create with a name in use: %v, want conflict", err)
		}
		if s.NoPause {
			if err := s.Engine.Pause(ctx, id); !cerrdefs.IsNotImplemented(err) {
				t.Errorf("pause: %v, want not implemented", err)
			}
		} else {
			if err := s.Engine.Pause(ctx, id); !cerrdefs.IsConflict(err) {
				t.Errorf("pause of a container never started: %v, want conflict", err)
			}
			if err := s.Engine.Unpause(ctx, id); !cerrdefs.IsConflict(err) {
				t.Errorf("unpause of a container not paused: %v, want conflict", err)
			}
		}
		noImage := runtime.Spec{Image: "bothy/no-such-image:" + s.Instance, Entrypoint: []string{"sleep", "600"}, Labels: labels(), Network: "none"}
		if !s.LateImageCheck {
			if _, err := s.Engine.Create(ctx, noImage); !cerrdefs.IsNotFound(err) {
				t.Errorf("create from a missing image: %v, want not found", err)
			}
		} else if id, err := s.Engine.Create(ctx, noImage); err != nil {
			t.Errorf("create from a missing image: %v", err)
		} else {
			t.Cleanup(func() { _ = s.Engine.Remove(context.Background(), id) })
			if err := s.Engine.Start(ctx, id); !cerrdefs.IsNotFound(err) {
				t.Errorf("start from a missing image: %v, want not found", err)
			}
			if c, err := s.Engine.Inspect(ctx, id); err != nil || c.State == runtime.StateRunning {
				t.Errorf("after a failed start: %+v, %v", c, err)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Engine.List(cctx, labels()); err == nil {
			t.Error("list with a cancelled context succeeded")
		}
	})

	t.Run("ListFiltersByEveryLabel", func(t *testing.T) {
		a := create(t, runtime.Spec{Labels: labels("group", "list", "member", "a")})
		b := create(t, runtime.Spec{Labels: labels("group", "list", "member", "b")})
		ids := func(l map[string]string) []string {
			t.Helper()
			cs, err := s.Engine.List(ctx, l)
			must(t, "list", err)
			var out []string
			for _, c := range cs {
				out = append(out, c.ID)
				if c.State != runtime.StateCreated || c.Labels[runtime.LabelInstance] != s.Instance {
					t.Errorf("listed %+v", c)
				}
			}
			slices.Sort(out)
			return out
		}
		both := []string{a, b}
		slices.Sort(both)
		if got := ids(labels("group", "list")); !slices.Equal(got, both) {
			t.Errorf("list group=list: %v, want %v", got, both)
		}
		if got := ids(labels("group", "list", "member", "b")); !slices.Equal(got, []string{b}) {
			t.Errorf("list member=b: %v, want [%s]", got, b)
		}
		if got := ids(labels("group", "nobody")); len(got) != 0 {
			t.Errorf("list group=nobody: %v, want none", got)
		}
		must(t, "start", s.Engine.Start(ctx, a))
		cs, err := s.Engine.List(ctx, labels("member", "a"))
		must(t, "list", err)
		if len(cs) != 1 || cs[0].State != runtime.StateRunning {
			t.Errorf("list of a running container: %+v", cs)
		}
	})

	t.Run("Networks", func(t *testing.T) {
		name := "conf-" + s.Instance
		spec := runtime.NetworkSpec{Name: name, Bridge: s.Bridge, Labels: labels(runtime.LabelKind, runtime.KindNetwork)}
		must(t, "ensure network", s.Engine.EnsureNetwork(ctx, spec))
		t.Cleanup(func() { _ = s.Engine.RemoveNetwork(context.Background(), name) })
		must(t, "ensure it again", s.Engine.EnsureNetwork(ctx, spec))
		got, err := s.Engine.Networks(ctx, labels())
		must(t, "networks", err)
		if !slices.Equal(got, []string{name}) {
			t.Fatalf("networks = %v, want [%s]", got, name)
		}
		id, err := s.Engine.Create(ctx, runtime.Spec{Image: s.Image, Entrypoint: []string{"sleep", "600"},
			Network: name, Labels: labels(), StopTimeout: time.Second})
		must(t, "create on the network", err)
		t.Cleanup(func() { _ = s.Engine.Remove(context.Background(), id) })
		must(t, "start on the network", s.Engine.Start(ctx, id))
		// A running container has an address on its network, its own; a
		// stopped one has none.
		other, err := s.Engine.Create(ctx, runtime.Spec{Image: s.Image, Entrypoint: []string{"sleep", "600"},
			Network: name, Labels: labels(), StopTimeout: time.Second})
		must(t, "create another on the network", err)
		t.Cleanup(func() { _ = s.Engine.Remove(context.Background(), other) })
		must(t, "start it", s.Engine.Start(ctx, other))
		a, err := s.Engine.Inspect(ctx, id)
		must(t, "inspect", err)
		b, err := s.Engine.Inspect(ctx, other)
		must(t, "inspect the other", err)
		if net.ParseIP(a.Addr) == nil || net.ParseIP(b.Addr) == nil || a.Addr == b.Addr {
			t.Fatalf("addresses on the network: %q and %q", a.Addr, b.Addr)
		}
		must(t, "stop the other", s.Engine.Stop(ctx, other, time.Second))
		if b, err := s.Engine.Inspect(ctx, other); err != nil || b.Addr != "" {
			t.Fatalf("a stopped container has the address %q (%v)", b.Addr, err)
		}
		must(t, "remove the other", s.Engine.Remove(ctx, other))
		if err := s.Engine.RemoveNetwork(ctx, name); err == nil {
			t.Fatal("removed a network a running container uses")
		}
		must(t, "remove the container", s.Engine.Remove(ctx, id))
		must(t, "remove the network", s.Engine.RemoveNetwork(ctx, name))
		if err := s.Engine.RemoveNetwork(ctx, name); !cerrdefs.IsNotFound(err) {
			t.Fatalf("remove a missing network: %v, want not found", err)
		}
	})

	t.Run("Info", func(t *testing.T) {
		info, err := s.Engine.Info(ctx)
		must(t, "info", err)
		if info.Version == "" || info.APIVersion == "" {
			t.Fatalf("info = %+v", info)
		}
	})
}
