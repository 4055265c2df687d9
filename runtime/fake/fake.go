// Package fake is an in-memory container engine for unit tests. It keeps
// containers, networks and images in maps and answers as the Docker adapter
// does, error classes included; runtime/conformance holds it to that, on the
// same suite the real engine passes.
//
// A fake container runs no process. When Boot is set, a started container
// runs Boot in a goroutine until the container stops (its context is then
// cancelled); Boot returning on its own is the container's process exiting.
package fake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/runtime"
)

// Engine is the in-memory engine. Its zero value is not usable; call New.
type Engine struct {
	// Boot, when set, is what a started container runs; addr is its
	// address (as Container.Addr) while it runs on a network.
	Boot func(ctx context.Context, spec runtime.Spec, addr string) (exitCode int)

	mu         sync.Mutex
	info       runtime.EngineInfo
	containers map[string]*container
	names      map[string]string // name -> ID
	networks   map[string]runtime.NetworkSpec
	images     map[string]runtime.Image // by each tag, and by ID
	// started counts starts on networks: each takes an address of its own
	// in 127.77.0.0/16, on this host's loopback (addr).
	started uint32
}

// addr is the loopback address of the nth start on a network.
func addr(n uint32) string {
	n = n%(250*256) + 2
	return fmt.Sprintf("127.77.%d.%d", n/250, n%250+2)
}

type container struct {
	c    runtime.Container
	spec runtime.Spec
	// stop ends the running Boot; done closes when it has returned.
	stop context.CancelFunc
	done chan struct{}
}

// New returns an empty engine that reports info.
func New(info runtime.EngineInfo) *Engine {
	if info.Version == "" {
		info.Version = "fake"
	}
	if info.APIVersion == "" {
		info.APIVersion = "1.0"
	}
	return &Engine{info: info, containers: map[string]*container{}, names: map[string]string{},
		networks: map[string]runtime.NetworkSpec{}, images: map[string]runtime.Image{}}
}

// AddImage makes img exist, under its tags and its ID.
func (e *Engine) AddImage(img runtime.Image) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if img.ID == "" {
		img.ID = "sha256:" + randomHex(32)
	}
	if img.Created.IsZero() {
		img.Created = time.Now()
	}
	e.images[img.ID] = img
	for _, t := range img.Tags {
		e.images[t] = img
	}
}

// Info reports the engine.
func (e *Engine) Info(context.Context) (runtime.EngineInfo, error) { return e.info, nil }

// Create makes a container of spec, not started.
func (e *Engine) Create(ctx context.Context, spec runtime.Spec) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.images[spec.Image]; !ok {
		return "", cerrdefs.ErrNotFound.WithMessage("create container: no such image: " + spec.Image)
	}
	if spec.Network != "" && spec.Network != "none" {
		if _, ok := e.networks[spec.Network]; !ok {
			return "", cerrdefs.ErrNotFound.WithMessage("create container: no such network: " + spec.Network)
		}
	}
	id := randomHex(32)
	name := spec.Name
	if name == "" {
		name = "fake_" + id[:12]
	}
	if _, taken := e.names[name]; taken {
		return "", cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("create container: the name %q is already in use", name))
	}
	e.names[name] = id
	e.containers[id] = &container{spec: spec, c: runtime.Container{
		ID: id, Name: name, Image: spec.Image, Labels: maps.Clone(spec.Labels),
		State: runtime.StateCreated, Created: time.Now(),
	}}
	return id, nil
}

// lookup finds a container by ID, ID prefix or name; the caller holds mu.
func (e *Engine) lookup(ref string) (*container, error) {
	if c, ok := e.containers[ref]; ok {
		return c, nil
	}
	if id, ok := e.names[ref]; ok {
		return e.containers[id], nil
	}
	var found *container
	if len(ref) >= 4 {
		for id, c := range e.containers {
			if len(id) > len(ref) && id[:len(ref)] == ref {
				if found != nil {
					return nil, cerrdefs.ErrInvalidArgument.WithMessage("ambiguous container ID prefix " + ref)
				}
				found = c
			}
		}
	}
	if found == nil {
		return nil, cerrdefs.ErrNotFound.WithMessage("no such container: " + ref)
	}
	return found, nil
}

// withContainer runs fn on container id under the engine's lock, unless
// ctx is done or there is no such container.
func (e *Engine) withContainer(ctx context.Context, id string, fn func(c *container) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, err := e.lookup(id)
	if err != nil {
		return err
	}
	return fn(c)
}

// Start runs a created or exited container; a running one is left as it is.
func (e *Engine) Start(ctx context.Context, id string) error {
	return e.withContainer(ctx, id, func(c *container) error {
		switch c.c.State {
		case runtime.StateRunning:
			return nil
		case runtime.StatePaused:
			return cerrdefs.ErrConflict.WithMessage("cannot start a paused container, try unpause instead")
		}
		c.c.State, c.c.ExitCode, c.c.OOMKilled = runtime.StateRunning, 0, false
		if c.spec.Network != "" && c.spec.Network != "none" {
			e.started++
			c.c.Addr = addr(e.started)
		}
		bootCtx, stop := context.WithCancel(context.Background())
		c.stop, c.done = stop, make(chan struct{})
		if e.Boot == nil {
			return nil
		}
		go func(c *container, done chan struct{}, addr string) {
			code := e.Boot(bootCtx, c.spec, addr)
			close(done)
			e.mu.Lock()
			defer e.mu.Unlock()
			if c.done == done && bootCtx.Err() == nil { // exited by itself
				c.c.State, c.c.ExitCode, c.c.Addr, c.stop = runtime.StateExited, code, "", nil
			}
		}(c, c.done, c.c.Addr)
		return nil
	})
}

// halt ends c's process, waiting up to timeout for Boot to return; the
// caller holds mu, which halt releases while it waits.
func (e *Engine) halt(c *container, timeout time.Duration) {
	if c.stop == nil {
		return
	}
	stop, done := c.stop, c.done
	c.stop = nil
	stop()
	if e.Boot != nil {
		e.mu.Unlock()
		select {
		case <-done:
		case <-time.After(timeout):
		}
		e.mu.Lock()
	}
}

// Stop stops a running or paused container; another is left as it is.
func (e *Engine) Stop(ctx context.Context, id string, timeout time.Duration) error {
	return e.withContainer(ctx, id, func(c *container) error {
		if c.c.State != runtime.StateRunning && c.c.State != runtime.StatePaused {
			return nil
		}
		e.halt(c, timeout)
		c.c.State, c.c.ExitCode, c.c.Addr = runtime.StateExited, 137, ""
		return nil
	})
}

// Pause freezes a running container.
func (e *Engine) Pause(ctx context.Context, id string) error {
	return e.flip(ctx, id, runtime.StateRunning, runtime.StatePaused)
}

// Unpause thaws a paused container.
func (e *Engine) Unpause(ctx context.Context, id string) error {
	return e.flip(ctx, id, runtime.StatePaused, runtime.StateRunning)
}

func (e *Engine) flip(ctx context.Context, id string, from, to runtime.State) error {
	return e.withContainer(ctx, id, func(c *container) error {
		if c.c.State != from {
			return cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is %s, not %s", c.c.ID, c.c.State, from))
		}
		c.c.State = to
		return nil
	})
}

// Remove removes a container, stopping it first if it runs.
func (e *Engine) Remove(ctx context.Context, id string) error {
	return e.withContainer(ctx, id, func(c *container) error {
		e.halt(c, 0)
		if _, still := e.containers[c.c.ID]; !still {
			return cerrdefs.ErrNotFound.WithMessage("no such container: " + id)
		}
		delete(e.containers, c.c.ID)
		delete(e.names, c.c.Name)
		return nil
	})
}

// Rename gives a container another name.
func (e *Engine) Rename(ctx context.Context, id, name string) error {
	return e.withContainer(ctx, id, func(c *container) error {
		if other, taken := e.names[name]; taken && other != c.c.ID {
			return cerrdefs.ErrConflict.WithMessage("name " + name + " is in use")
		}
		delete(e.names, c.c.Name)
		c.c.Name = name
		e.names[name] = c.c.ID
		return nil
	})
}

// Inspect describes a container.
func (e *Engine) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	var out runtime.Container
	err := e.withContainer(ctx, id, func(c *container) error {
		out = c.c
		out.Labels = maps.Clone(c.c.Labels)
		return nil
	})
	return out, err
}

// List describes every container that carries all of labels.
func (e *Engine) List(ctx context.Context, labels map[string]string) ([]runtime.Container, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []runtime.Container{}
	for _, c := range e.containers {
		if hasLabels(c.c.Labels, labels) {
			cc := c.c
			cc.Labels = maps.Clone(c.c.Labels)
			out = append(out, cc)
		}
	}
	return out, nil
}

// EnsureNetwork makes the network unless it exists.
func (e *Engine) EnsureNetwork(ctx context.Context, spec runtime.NetworkSpec) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.networks[spec.Name]; !ok {
		e.networks[spec.Name] = spec
	}
	return nil
}

// RemoveNetwork removes a network no container uses.
func (e *Engine) RemoveNetwork(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.networks[name]; !ok {
		return cerrdefs.ErrNotFound.WithMessage("no such network: " + name)
	}
	for _, c := range e.containers {
		if c.spec.Network == name && (c.c.State == runtime.StateRunning || c.c.State == runtime.StatePaused) {
			return cerrdefs.ErrConflict.WithMessage("network " + name + " has active endpoints")
		}
	}
	delete(e.networks, name)
	return nil
}

// Networks lists the networks that carry all of labels, by name.
func (e *Engine) Networks(ctx context.Context, labels map[string]string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []string{}
	for name, n := range e.networks {
		if hasLabels(n.Labels, labels) {
			out = append(out, name)
		}
	}
	return out, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
