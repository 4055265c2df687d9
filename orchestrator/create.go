package orchestrator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/runtime"
)

// Create makes, starts and waits for a new sandbox of owner's. With an
// idempotency key it returns the sandbox an earlier create with the same key
// made (replayed is then true) as long as that sandbox exists.
func (o *Orchestrator) Create(ctx context.Context, owner string, opts CreateOptions) (sb Sandbox, replayed bool, err error) {
	if opts.Snapshot != "" {
		if opts.Image != "" {
			return Sandbox{}, false, cerrdefs.ErrInvalidArgument.WithMessage("give image or snapshot, not both")
		}
		if opts.Image, err = o.cfg.Checkpoints.SnapshotImage(ctx, owner, opts.Snapshot); err != nil {
			return Sandbox{}, false, err
		}
	}
	image, spec, err := opts.resolve(o.cfg.DefaultImage, o.cfg.Limits, o.diskLimits)
	if err != nil {
		return Sandbox{}, false, err
	}
	if opts.IdempotencyKey != "" {
		unlock := o.locks.Lock("idempotency\x00" + owner + "\x00" + opts.IdempotencyKey)
		defer unlock()
		id, ok, err := o.store.idempotent(ctx, owner, opts.IdempotencyKey)
		if err != nil {
			return Sandbox{}, false, err
		}
		if ok {
			if sb, err := o.Get(ctx, owner, id); err == nil {
				return sb, true, nil
			}
		}
	}
	if p := o.poolFor(image, spec); p != nil {
		if sb, ok, err := o.claim(ctx, p, owner, spec, opts); err != nil || ok {
			return sb, false, err
		}
	}
	t0 := time.Now()
	if _, err := o.images.EnsureFor(ctx, owner, image, nil); err != nil {
		return Sandbox{}, false, err
	}
	tImage := time.Now()

	now := o.now()
	spec.Transport = o.transportOf(spec)
	sb = Sandbox{
		ID: newID("sb-", 8), Owner: owner, State: StateCreating, Image: image, Spec: spec,
		Labels: opts.Labels, CreatedAt: now, UpdatedAt: now, LastActiveAt: now,
		token: newID("", 24),
	}
	// The undo steps name the sandbox by id: the named result sb is zeroed by
	// the failing return before they run.
	id := sb.ID
	log := o.log.With("sandbox_id", id)
	unlock := o.locks.Lock(id)
	defer unlock()
	var undo undoStack
	defer undo.run(ctx, &err, log)

	unlockQuota := o.locks.Lock("quota\x00" + owner)
	if err := o.admit(ctx, owner, spec, true); err != nil {
		unlockQuota()
		return Sandbox{}, false, err
	}
	err = o.store.insert(ctx, &sb)
	unlockQuota()
	if err != nil {
		return Sandbox{}, false, err
	}
	undo.push(func(ctx context.Context) error { return o.store.delete(ctx, id) })
	if opts.IdempotencyKey != "" {
		if err := o.store.remember(ctx, owner, opts.IdempotencyKey, sb.ID); err != nil {
			return Sandbox{}, false, err
		}
	}
	tStore := time.Now()
	t, err := o.launch(ctx, &sb, &undo)
	if err != nil {
		return Sandbox{}, false, err
	}
	o.creates.Add(1)
	log.Info("sandbox created", "image", image, "owner", owner, "container", sb.ContainerID[:12],
		"ms", time.Since(t0).Milliseconds())
	log.Debug("create timings", "image_ms", ms(tImage.Sub(t0)), "store_ms", ms(tStore.Sub(tImage)),
		"docker_create_ms", ms(t.created.Sub(tStore)), "docker_start_ms", ms(t.started.Sub(t.created)),
		"agent_ms", ms(t.agent.Sub(t.started)), "finish_ms", ms(time.Since(t.agent)))
	return sb, false, nil
}

// launchTimes are when the steps of a launch ended.
type launchTimes struct{ created, started, agent time.Time }

// launch makes a stored sandbox's container, starts it, waits for its agent
// and marks it running, pushing an undo for each step.
func (o *Orchestrator) launch(ctx context.Context, sb *Sandbox, undo *undoStack) (launchTimes, error) {
	var t launchTimes
	id := sb.ID
	l, err := o.endpoint(sb)
	if err != nil {
		return t, err
	}
	undo.push(func(context.Context) error { o.dropEndpoint(id); return nil })
	cid, err := o.rt.Create(ctx, o.containerSpec(sb))
	if err != nil {
		return t, err
	}
	undo.push(func(ctx context.Context) error { return o.rt.Remove(ctx, cid) })
	sb.ContainerID = cid
	if err := o.store.update(ctx, sb); err != nil {
		return t, err
	}
	t.created = time.Now()
	if err := o.rt.Start(ctx, cid); err != nil {
		return t, err
	}
	t.started = time.Now()
	conn, err := o.waitAgent(ctx, l)
	if err != nil {
		return t, err
	}
	t.agent = time.Now()
	if sb.Spec.User != "" {
		if err := checkUser(ctx, conn, sb.Spec.User); err != nil {
			return t, err
		}
	}
	return t, o.transition(ctx, sb, StateRunning, "")
}

// waitAgent waits, up to the ready timeout, for the sandbox's agent to dial in.
func (o *Orchestrator) waitAgent(ctx context.Context, l *live) (*agent.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.ReadyTimeout)
	defer cancel()
	conn, err := l.ep.Conn(ctx)
	if err != nil {
		return nil, errclass.Wrap(cerrdefs.ErrUnavailable, err, fmt.Sprintf("sandbox agent did not connect within %s", o.cfg.ReadyTimeout))
	}
	return conn, nil
}

// exitedError is a running sandbox whose container is not running: its
// agent will not come back until the sandbox is started again.
type exitedError struct {
	container, reason string
}

func (e *exitedError) Error() string { return "the sandbox's " + e.reason }

// agentOf is waitAgent for the data-plane calls of running sandbox sb: while
// the agent is away, it asks the engine, every second, whether the container
// still runs, and answers an exitedError when it does not.
func (o *Orchestrator) agentOf(ctx context.Context, l *live, sb Sandbox) (*agent.Conn, error) {
	if l.ep.Connected() {
		return l.ep.Conn(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, o.cfg.ReadyTimeout)
	defer cancel()
	for {
		if reason := o.exited(ctx, sb.ContainerID); reason != "" {
			return nil, &exitedError{container: sb.ContainerID, reason: reason}
		}
		wait, stop := context.WithTimeout(ctx, time.Second)
		conn, err := l.ep.Conn(wait)
		stop()
		if err == nil {
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, errclass.Wrap(cerrdefs.ErrUnavailable, err, fmt.Sprintf("sandbox agent did not connect within %s", o.cfg.ReadyTimeout))
		}
	}
}

// exited says why container cid is not running ("" when it runs, or the
// engine cannot say).
func (o *Orchestrator) exited(ctx context.Context, cid string) string {
	c, err := o.rt.Inspect(ctx, cid)
	switch {
	case err != nil && cerrdefs.IsNotFound(err):
		return "container is gone"
	case err != nil || c.State == runtime.StateRunning || c.State == runtime.StateRestarting || c.State == runtime.StatePaused:
		return ""
	case c.OOMKilled:
		return fmt.Sprintf("container exited (code %d): its processes ran out of memory", c.ExitCode)
	}
	return fmt.Sprintf("container exited (code %d)", c.ExitCode)
}

// checkUser refuses a sandbox whose user does not exist in its image.
func checkUser(ctx context.Context, conn *agent.Conn, user string) error {
	info, err := conn.User(ctx, user)
	if err != nil {
		return fmt.Errorf("look up user: %w", err)
	}
	if info.Error != "" {
		return cerrdefs.ErrInvalidArgument.WithMessage("user: " + info.Error + " in the sandbox's image")
	}
	return nil
}

// containerSpec is the container behind sb, with the isolation defaults.
func (o *Orchestrator) containerSpec(sb *Sandbox) runtime.Spec {
	env := make([]string, 0, len(sb.Spec.Env)+2)
	for k, v := range sb.Spec.Env {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	env = append(env, wire.SocketEnv)
	network := o.cfg.Network
	if sb.Spec.Network == "none" {
		network = "none"
	}
	return runtime.Spec{
		Name:       "bothy-" + sb.ID,
		Image:      sb.Image,
		Entrypoint: []string{wire.BinaryPath},
		Env:        env,
		User:       "0:0",
		WorkingDir: sb.Spec.Workdir,
		Hostname:   sb.ID,
		Labels: map[string]string{
			runtime.LabelID:       sb.ID,
			runtime.LabelOwner:    sb.Owner,
			runtime.LabelKind:     runtime.KindSandbox,
			runtime.LabelInstance: o.cfg.Instance,
		},
		Mounts: append([]runtime.Mount{
			{Source: o.agentHost, Target: wire.BinaryPath, ReadOnly: true},
			{Source: o.runDir(sb.ID), Target: wire.RunMount, ReadOnly: true},
		}, o.etcMounts(sb)...),
		NanoCPUs:    int64(sb.Spec.CPUs * 1e9),
		MemoryBytes: sb.Spec.MemoryMB << 20,
		DiskBytes:   sb.Spec.DiskMB << 20,
		PidsLimit:   sb.Spec.Pids,
		Network:     network,
		CapAdd:      Capabilities,
		StopTimeout: o.cfg.StopTimeout,
	}
}

// etcMounts writes the files the engine would otherwise make for a
// container (/etc/hosts, /etc/hostname, /etc/resolv.conf) into sb's run
// directory and mounts them read-only. The engine's own copies live beside
// the container in its data root, outside the container's disk limit, and
// it mounts them writable: a sandbox could fill the host's disk through
// /etc/hosts. The resolver is the engine's, on its networks.
func (o *Orchestrator) etcMounts(sb *Sandbox) []runtime.Mount {
	dir := o.runDir(sb.ID)
	_ = os.MkdirAll(dir, 0o711)
	resolv := "nameserver 127.0.0.11\noptions ndots:0\n"
	if sb.Spec.Network == "none" {
		resolv = ""
	}
	files := []struct{ name, target, content string }{
		{"hosts", "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + sb.ID + "\n"},
		{"hostname", "/etc/hostname", sb.ID + "\n"},
		{"resolv.conf", "/etc/resolv.conf", resolv},
	}
	out := make([]runtime.Mount, 0, len(files))
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		_ = os.WriteFile(p, []byte(f.content), 0o644)
		out = append(out, runtime.Mount{Source: p, Target: f.target, ReadOnly: true})
	}
	return out
}

func notFound(id string) error {
	return cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("sandbox %s not found", id))
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
