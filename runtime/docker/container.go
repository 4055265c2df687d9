package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"

	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/runtime"
)

// Create creates (but does not start) a container from spec and returns its ID.
// Every capability is dropped and spec.CapAdd added back; new privileges are
// refused; swap is off.
func (d *Docker) Create(ctx context.Context, spec runtime.Spec) (string, error) {
	// An image's volumes would live outside the disk limit: the container
	// is made from its copy without them (volumes.go).
	image, err := d.withoutVolumes(ctx, spec.Image)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	cfg := &container.Config{
		Image:      image,
		Entrypoint: spec.Entrypoint,
		Cmd:        []string{},
		Env:        spec.Env,
		User:       spec.User,
		WorkingDir: spec.WorkingDir,
		Hostname:   spec.Hostname,
		Labels:     spec.Labels,
		// Whatever the image says, bothy's containers have no health
		// check and stop on SIGTERM.
		Healthcheck: &container.HealthConfig{Test: []string{"NONE"}},
		StopSignal:  "SIGTERM",
	}
	if spec.StopTimeout > 0 {
		s := int(spec.StopTimeout / time.Second)
		cfg.StopTimeout = &s
	}
	host := &container.HostConfig{
		NetworkMode:    container.NetworkMode(spec.Network),
		CapDrop:        []string{"ALL"},
		CapAdd:         spec.CapAdd,
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: spec.ReadOnlyRoot,
		Init:           new(bool),
	}
	host.Tmpfs = spec.Tmpfs
	if spec.DiskBytes > 0 {
		host.StorageOpt = map[string]string{"size": strconv.FormatInt(spec.DiskBytes, 10)}
	}
	if spec.NoFile > 0 {
		host.Ulimits = []*container.Ulimit{{Name: "nofile", Soft: spec.NoFile, Hard: spec.NoFile}}
	}
	// No POSIX message queues (their bytes count against root's own limit
	// on the host), and a share of queued signals (shares.go).
	host.Ulimits = append(host.Ulimits, &container.Ulimit{Name: "msgqueue", Soft: 0, Hard: 0})
	if d.shares.SigPending > 0 {
		host.Ulimits = append(host.Ulimits, &container.Ulimit{Name: "sigpending", Soft: d.shares.SigPending, Hard: d.shares.SigPending})
	}
	host.NanoCPUs = spec.NanoCPUs
	host.Memory = spec.MemoryBytes
	if spec.MemoryBytes > 0 {
		host.MemorySwap = spec.MemoryBytes
	}
	if spec.PidsLimit > 0 {
		host.PidsLimit = &spec.PidsLimit
	}
	for _, m := range spec.Mounts {
		host.Mounts = append(host.Mounts, mount.Mount{
			Type: mount.TypeBind, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly,
		})
	}
	res, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: cfg, HostConfig: host, Name: spec.Name,
	})
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	return res.ID, nil
}

// Start starts a created or stopped container.
func (d *Docker) Start(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if _, err := d.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	// Its shares of the kernel's shared limits, before anything of a
	// user's runs in it (the agent runs nothing until it is asked to).
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect started container %s: %w", id, err)
	}
	if res.Container.State == nil || res.Container.State.Pid == 0 {
		return fmt.Errorf("start container %s: it is not running", id)
	}
	if err := d.applyShares(ctx, res.Container.State.Pid); err != nil {
		_, _ = d.cli.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: "SIGKILL"})
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// applyShares gives a started container its shares, when it has a user
// namespace of its own (with the engine's userns-remap): without one, its
// root is the host's, and the limits of the host's own namespace are not
// the container's to lower.
//
// bothy in a PID namespace of its own (a container without --pid=host)
// does not see the engine's processes: the containers then run without
// shares, and the log says so once.
func (d *Docker) applyShares(ctx context.Context, pid int) error {
	own, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", pid))
	if errors.Is(err1, fs.ErrNotExist) {
		d.unseen.Do(func() {
			d.log.Warn("containers run without their shares of the kernel's shared limits (inotify, terminals): bothy cannot see the engine's processes; run it in the host's PID namespace", "pid", pid)
		})
		return nil
	}
	host, err2 := os.Readlink("/proc/self/ns/user")
	if err1 != nil || err2 != nil {
		return fmt.Errorf("user namespace of process %d: %w", pid, errors.Join(err1, err2))
	}
	if own == host {
		return nil
	}
	return applyShares(ctx, pid, d.shares)
}

// Stop stops a container, killing it after timeout.
func (d *Docker) Stop(ctx context.Context, id string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout+timeout)
	defer cancel()
	s := int(timeout / time.Second)
	if _, err := d.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &s}); err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	return nil
}

// Remove force-removes a container and its anonymous volumes.
func (d *Docker) Remove(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if _, err := d.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	d.netns.Delete(id)
	return nil
}

// Rename gives a container another name.
func (d *Docker) Rename(ctx context.Context, id, name string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	if _, err := d.cli.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: name}); err != nil {
		return fmt.Errorf("rename container %s: %w", id, err)
	}
	return nil
}

// Inspect reports one container.
func (d *Docker) Inspect(ctx context.Context, id string) (runtime.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	res, err := d.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return runtime.Container{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	c := res.Container
	out := runtime.Container{ID: c.ID, Name: strings.TrimPrefix(c.Name, "/")}
	if c.Config != nil {
		out.Image, out.Labels = c.Config.Image, c.Config.Labels
	}
	if c.State != nil {
		out.State = runtime.State(c.State.Status)
		out.OOMKilled = c.State.OOMKilled
		out.ExitCode = c.State.ExitCode
	}
	out.Created, _ = time.Parse(time.RFC3339Nano, c.Created)
	if c.NetworkSettings != nil {
		for _, n := range c.NetworkSettings.Networks {
			if n != nil && n.IPAddress.IsValid() {
				out.Addr = n.IPAddress.String()
				break
			}
		}
	}
	return out, nil
}

// List reports every container (running or not) that carries all of labels.
func (d *Docker) List(ctx context.Context, labels map[string]string) ([]runtime.Container, error) {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	f := client.Filters{}
	for k, v := range labels {
		f.Add("label", k+"="+v)
	}
	res, err := d.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]runtime.Container, 0, len(res.Items))
	for _, c := range res.Items {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, runtime.Container{
			ID: c.ID, Name: name, Image: c.Image, Labels: c.Labels,
			State: runtime.State(c.State), Created: time.Unix(c.Created, 0),
		})
	}
	return out, nil
}

// DockerExec runs argv in a container through the engine's own exec API and
// returns its exit code. bothy does not use it: it is the baseline that the
// agent's exec is measured against.
func (d *Docker) DockerExec(ctx context.Context, id string, argv []string) (int, error) {
	ex, err := d.cli.ExecCreate(ctx, id, client.ExecCreateOptions{Cmd: argv, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, fmt.Errorf("exec create: %w", err)
	}
	att, err := d.cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return 0, fmt.Errorf("exec attach: %w", err)
	}
	_, err = stdcopy.StdCopy(io.Discard, io.Discard, att.Reader)
	att.Close()
	if err != nil {
		return 0, fmt.Errorf("exec output: %w", err)
	}
	res, err := d.cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return 0, fmt.Errorf("exec inspect: %w", err)
	}
	return res.ExitCode, nil
}

// TTYStream is an exec with a terminal, attached through the engine.
type TTYStream struct {
	Conn   io.Writer
	Reader io.Reader
	close  func()
}

// Close ends the attachment.
func (t *TTYStream) Close() { t.close() }

// DockerExecTTY starts argv in a container with a terminal through the
// engine's exec API (`docker exec -it`) and returns the attached stream. Like
// DockerExec, it is a baseline for the benchmarks, not a path bothy uses.
func (d *Docker) DockerExecTTY(ctx context.Context, id string, argv []string) (*TTYStream, error) {
	ex, err := d.cli.ExecCreate(ctx, id, client.ExecCreateOptions{
		Cmd: argv, TTY: true, AttachStdin: true, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return nil, fmt.Errorf("exec create: %w", err)
	}
	att, err := d.cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{TTY: true})
	if err != nil {
		return nil, fmt.Errorf("exec attach: %w", err)
	}
	return &TTYStream{Conn: att.Conn, Reader: att.Reader, close: att.Close}, nil
}

// DockerCopyTo extracts a tar stream into dir of a container through the
// engine's archive API (`docker cp`). A benchmark baseline only: bothy never
// copies into a running sandbox this way.
func (d *Docker) DockerCopyTo(ctx context.Context, id, dir string, tarball io.Reader) error {
	_, err := d.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: dir, Content: tarball})
	return err
}

// DockerCopyFrom streams p out of a container as a tar through the engine's
// archive API (`docker cp`). A benchmark baseline only.
func (d *Docker) DockerCopyFrom(ctx context.Context, id, p string, w io.Writer) error {
	res, err := d.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: p})
	if err != nil {
		return err
	}
	defer res.Content.Close()
	_, err = io.Copy(w, res.Content)
	return err
}

// DockerDiff lists the paths a container changed in its own layer, through
// the Engine API (`docker diff`). A benchmark baseline only.
func (d *Docker) DockerDiff(ctx context.Context, id string) (int, error) {
	res, err := d.cli.ContainerDiff(ctx, id, client.ContainerDiffOptions{})
	if err != nil {
		return 0, err
	}
	return len(res.Changes), nil
}

// Pause freezes every process of a container (cgroup freezer).
//
// On cgroup v1 the freezer gives up on a cgroup whose tasks keep moving (runc:
// "unable to freeze"), more often on a loaded machine; runc thaws it again,
// so a pause that fails with the engine's internal error is tried again, up
// to three times.
func (d *Docker) Pause(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
		}
		// The freezer's failure reaches us as the engine's internal error;
		// any other class (no such container, not running) is final.
		if _, err = d.cli.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err == nil || !cerrdefs.IsInternal(err) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Unpause thaws a paused container.
func (d *Docker) Unpause(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	_, err := d.cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
	if err == nil {
		return nil
	}
	// The engine answers an unpause of a container that is not paused
	// with an internal error; it is the caller's conflict.
	if cerrdefs.IsInternal(err) {
		if c, ierr := d.Inspect(ctx, id); ierr == nil && c.State != runtime.StatePaused {
			return errclass.Wrap(cerrdefs.ErrConflict, err, fmt.Sprintf("unpause container %s: it is %s", id, c.State))
		}
	}
	return fmt.Errorf("unpause container %s: %w", id, err)
}

// Commit captures a container's filesystem changes as the image ref, pausing
// the container while it does (the engine thaws it again whatever happens)
// when it is running.
func (d *Docker) Commit(ctx context.Context, id, ref string, labels map[string]string) (string, error) {
	changes := make([]string, 0, len(labels))
	for k, v := range labels {
		changes = append(changes, fmt.Sprintf("LABEL %s=%q", k, v))
	}
	res, err := d.cli.ContainerCommit(ctx, id, client.ContainerCommitOptions{Reference: ref, Changes: changes})
	if err != nil {
		return "", fmt.Errorf("commit container %s: %w", id, err)
	}
	return res.ID, nil
}

// ReadImagePath streams path as it is in image, as a tar (entry names start at
// path's base name), through a container that is created for it and never
// started. found is false when image has no such path.
func (d *Docker) ReadImagePath(ctx context.Context, image, path string) (rc io.ReadCloser, found bool, err error) {
	res, err := d.cli.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config:     &container.Config{Image: image, Entrypoint: []string{"/nonexistent"}, Labels: map[string]string{runtime.LabelKind: "probe"}},
		HostConfig: &container.HostConfig{NetworkMode: "none"},
	})
	if err != nil {
		return nil, false, fmt.Errorf("probe container of %s: %w", image, err)
	}
	remove := func() {
		_, _ = d.cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
	}
	out, err := d.cli.CopyFromContainer(ctx, res.ID, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		remove()
		if cerrdefs.IsNotFound(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("read %s of %s: %w", path, image, err)
	}
	return &closeFunc{ReadCloser: out.Content, after: remove}, true, nil
}

type closeFunc struct {
	io.ReadCloser
	after func()
}

func (c *closeFunc) Close() error {
	err := c.ReadCloser.Close()
	c.after()
	return err
}
