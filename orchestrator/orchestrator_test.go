package orchestrator

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

type fixture struct {
	o    *Orchestrator
	d    *docker.Docker
	cfg  Config
	data string
}

func newFixture(t *testing.T, tweak func(*Config)) *fixture {
	t.Helper()
	d := testenv.Docker(t)
	data := testenv.DataDir(t)
	cfg := Config{
		Instance:     testenv.Instance("test"),
		DataDir:      data,
		AgentBinary:  testenv.AgentBinary(t),
		Network:      network,
		Bridge:       bridge,
		DefaultImage: images.Busybox,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	f := &fixture{d: d, cfg: cfg, data: data}
	f.open(t)
	t.Cleanup(func() { f.cleanup(t) })
	return f
}

func (f *fixture) open(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	sq, b := testenv.DB(t, f.data), images.New(f.d, testenv.Logger(t), "", filepath.Join(f.data, "build"))
	t.Cleanup(b.Close)
	o, err := New(ctx, f.cfg, f.d, b, sq, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	f.o = o
}

// cleanup removes every container this test's instance made.
func (f *fixture) cleanup(t *testing.T) {
	f.o.Close()
	cs, _ := f.d.List(context.Background(), map[string]string{runtime.LabelInstance: f.cfg.Instance})
	for _, c := range cs {
		_ = f.d.Remove(context.Background(), c.ID)
	}
}

func (f *fixture) create(t *testing.T, owner string, opts CreateOptions) Sandbox {
	t.Helper()
	sb, _, err := f.o.Create(context.Background(), owner, opts)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return sb
}

func (f *fixture) exec(t *testing.T, owner, id, shell string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := f.o.Exec(ctx, owner, id, ExecOptions{Shell: shell}, nil, &out, &errb)
	if err != nil {
		t.Fatalf("exec %q: %v", shell, err)
	}
	return res.ExitCode, out.String() + errb.String()
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	sb, _, err := f.o.Create(ctx, "alice", CreateOptions{Env: map[string]string{"GREETING": "hi"}, Labels: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != StateRunning {
		t.Fatalf("state %s", sb.State)
	}
	if code, out := f.exec(t, "alice", sb.ID, `echo $GREETING; echo data > /root/keep`); code != 0 || out != "hi\n" {
		t.Fatalf("exec: %d %q", code, out)
	}
	// Another owner sees nothing.
	if _, err := f.o.Get(ctx, "bob", sb.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("bob got %v", err)
	}
	if _, err := f.o.Exec(ctx, "bob", sb.ID, ExecOptions{Shell: "true"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("bob exec got %v", err)
	}
	// Stop keeps files; an exec wakes the sandbox.
	if sb, err = f.o.Stop(ctx, "alice", sb.ID); err != nil || sb.State != StateStopped {
		t.Fatalf("stop: %v %s", err, sb.State)
	}
	if code, out := f.exec(t, "alice", sb.ID, "cat /root/keep"); code != 0 || out != "data\n" {
		t.Fatalf("after wake: %d %q", code, out)
	}
	if sb, _ = f.o.Get(ctx, "alice", sb.ID); sb.State != StateRunning {
		t.Fatalf("not woken: %s", sb.State)
	}
	list, _, err := f.o.List(ctx, "alice", ListFilter{Labels: map[string]string{"team": "a"}})
	if err != nil || len(list) != 1 {
		t.Fatalf("list by label: %v %d", err, len(list))
	}
	if list, _, _ = f.o.List(ctx, "alice", ListFilter{Labels: map[string]string{"team": "b"}}); len(list) != 0 {
		t.Fatalf("label filter matched %d", len(list))
	}
	if err := f.o.Delete(ctx, "alice", sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.Inspect(ctx, sb.ContainerID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container left behind: %v", err)
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	neg := int64(-1)
	for name, opts := range map[string]CreateOptions{
		"negative cpus":  {CPUs: -1},
		"absurd memory":  {MemoryMB: 1 << 40},
		"few pids":       {Pids: 1},
		"network":        {Network: "host"},
		"idle":           {IdleTimeout: &neg},
		"env name":       {Env: map[string]string{"A=B": "x"}},
		"reserved env":   {Env: map[string]string{"BOTHY_TOKEN": "x"}},
		"unknown image":  {Image: "no-such-image-for-bothy:v9"},
		"relative dir":   {Workdir: "tmp"},
		"unknown user":   {User: "nobody-here"},
		"bad label":      {Labels: map[string]string{"": "x"}},
		"bad user chars": {User: "root; rm -rf /"},
	} {
		if _, _, err := f.o.Create(ctx, "alice", opts); !cerrdefs.IsInvalidArgument(err) {
			t.Errorf("%s: want invalid argument, got %v", name, err)
		}
		if list, _, _ := f.o.List(ctx, "alice", ListFilter{}); len(list) != 0 {
			t.Fatalf("%s: left a row", name)
		}
	}
	list, _, _ := f.o.List(ctx, "alice", ListFilter{})
	cs, _ := f.d.List(ctx, map[string]string{runtime.LabelInstance: f.cfg.Instance})
	if len(list) != 0 || len(cs) != 0 {
		t.Fatalf("bad input left %d rows and %d containers", len(list), len(cs))
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	a, replayed, err := f.o.Create(ctx, "alice", CreateOptions{IdempotencyKey: "k1"})
	if err != nil || replayed {
		t.Fatal(err, replayed)
	}
	b, replayed, err := f.o.Create(ctx, "alice", CreateOptions{IdempotencyKey: "k1"})
	if err != nil || !replayed || b.ID != a.ID {
		t.Fatalf("repeat: %v %v %s != %s", err, replayed, b.ID, a.ID)
	}
	c, replayed, err := f.o.Create(ctx, "bob", CreateOptions{IdempotencyKey: "k1"})
	if err != nil || replayed || c.ID == a.ID {
		t.Fatalf("another owner shared a key: %v %v", err, replayed)
	}
}

func TestIdleTimeoutAndTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *Config) { c.ReapEvery = 100 * time.Millisecond })
	ctx := context.Background()
	idle, ttl := int64(1), int64(2)
	a := f.create(t, "alice", CreateOptions{IdleTimeout: &idle})
	b := f.create(t, "alice", CreateOptions{TTLSeconds: &ttl})
	waitFor(t, 20*time.Second, func() bool {
		sb, _ := f.o.Get(ctx, "alice", a.ID)
		return sb.State == StateStopped
	})
	waitFor(t, 20*time.Second, func() bool {
		_, err := f.o.Get(ctx, "alice", b.ID)
		return cerrdefs.IsNotFound(err)
	})
}

func TestReconcile(t *testing.T) {
	t.Parallel()
	// The orchestrator's clock runs a day ahead: every container it finds
	// is past the grace period.
	f := newFixture(t, func(c *Config) { c.Now = func() time.Time { return time.Now().Add(24 * time.Hour) } })
	ctx := context.Background()
	// A labelled container with no row is an orphan; an unlabelled one is not ours.
	spec := runtime.Spec{Image: images.Busybox, Entrypoint: []string{"sleep", "60"}, Network: "none",
		Labels: map[string]string{runtime.LabelInstance: f.cfg.Instance, runtime.LabelKind: runtime.KindSandbox, runtime.LabelID: "sb-orphan"}}
	orphan, err := f.d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	spec.Labels = map[string]string{"test": f.cfg.Instance}
	stranger, err := f.d.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.d.Remove(context.Background(), stranger) })
	if err := f.o.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.d.Inspect(ctx, orphan); !cerrdefs.IsNotFound(err) {
		t.Fatalf("orphan survived: %v", err)
	}
	if _, err := f.d.Inspect(ctx, stranger); err != nil {
		t.Fatalf("unlabelled container touched: %v", err)
	}
}

func TestRestartAdoptsSandboxes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	sb := f.create(t, "alice", CreateOptions{})
	f.exec(t, "alice", sb.ID, "echo persisted > /root/f")
	f.o.Close()
	f.open(t)
	if code, out := f.exec(t, "alice", sb.ID, "cat /root/f"); code != 0 || !strings.Contains(out, "persisted") {
		t.Fatalf("after restart: %d %q", code, out)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStopInterruptsRunningCommand(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	sb := f.create(t, "alice", CreateOptions{})
	errc := make(chan error, 1)
	go func() {
		_, err := f.o.Exec(ctx, "alice", sb.ID, ExecOptions{Argv: []string{"sleep", "300"}}, nil, &bytes.Buffer{}, &bytes.Buffer{})
		errc <- err
	}()
	waitFor(t, 10*time.Second, func() bool {
		l := f.o.lookupLive(sb.ID)
		return l != nil && l.inflight.Load() == 1
	})
	// Stop interrupts the command instead of waiting for it: the exec ends
	// with a conflict (a stop that waited would see it end by itself, after
	// its 300 s).
	if _, err := f.o.Stop(ctx, "alice", sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !cerrdefs.IsConflict(err) {
		t.Fatalf("interrupted exec: %v", err)
	}
}

func TestUserMemoryAndNetworkOptions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	sb := f.create(t, "alice", CreateOptions{User: "user", MemoryMB: 64, Network: "none"})
	if code, out := f.exec(t, "alice", sb.ID, "id -u; echo $HOME; ls /sys/class/net"); code != 0 || out != "1000\n/home/user\nlo\n" {
		t.Fatalf("user and network: %d %q", code, out)
	}
	// The per-command user overrides the sandbox's.
	res, err := f.o.Exec(ctx, "alice", sb.ID, ExecOptions{Argv: []string{"id", "-u"}, User: "root"}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil || res.ExitCode != 0 {
		t.Fatal(err, res)
	}
	// Going over the memory limit is reported as an OOM kill, not a platform error.
	res, err = f.o.Exec(ctx, "alice", sb.ID, ExecOptions{Shell: `x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo ${#x}`}, nil, &bytes.Buffer{}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OOMKilled || res.ExitCode == 0 {
		t.Fatalf("want an OOM kill: %+v", res)
	}
}

// TestEmptyImage runs a sandbox on an image with no files at all (no shell, no
// passwd, no libc): the agent needs nothing from the image.
func TestEmptyImage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	ref := "bothy-test/empty:" + f.cfg.Instance
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
	tw.Close()
	if err := f.d.ImageImport(ctx, &tarball, ref, []string{"LABEL " + runtime.LabelInstance + "=" + f.cfg.Instance}); err != nil {
		t.Fatal(err)
	}
	sb := f.create(t, "alice", CreateOptions{Image: ref})
	t.Cleanup(func() {
		_ = f.o.Delete(context.Background(), "alice", sb.ID)
		if err := f.d.ImageRemove(context.Background(), ref); err != nil {
			t.Errorf("remove the test's image: %v", err)
		}
	})
	var out, errb bytes.Buffer
	res, err := f.o.Exec(ctx, "alice", sb.ID, ExecOptions{Argv: []string{"/.bothy/bin/bothy-agent"}}, nil, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 2 || !strings.Contains(errb.String(), "BOTHY_SOCKET") {
		t.Fatalf("exit %d, stderr %q", res.ExitCode, errb.String())
	}
	res, err = f.o.Exec(ctx, "alice", sb.ID, ExecOptions{Argv: []string{"sh"}}, nil, &out, &errb)
	if err != nil || res.ExitCode != 127 || res.StartError == "" {
		t.Fatalf("missing shell: %+v %v", res, err)
	}
}

// TestPauseStopsCPU: a busy loop makes no progress while its sandbox is
// paused, and goes on after resume; any exec resumes a paused sandbox.
func TestPauseStopsCPU(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	sb := f.create(t, "alice", CreateOptions{})
	// The loop appends a byte per round: the file's size is its progress.
	f.exec(t, "alice", sb.ID, "(while true; do printf x >> /tmp/n; done) >/dev/null 2>&1 &")
	count := func() int {
		t.Helper()
		_, out := f.exec(t, "alice", sb.ID, "wc -c < /tmp/n")
		var n int
		fmt.Sscanf(strings.TrimSpace(out), "%d", &n)
		return n
	}
	waitFor(t, 10*time.Second, func() bool { return count() > 100 })

	if _, err := f.o.Pause(ctx, "alice", sb.ID); err != nil {
		t.Fatal(err)
	}
	got, _ := f.o.Get(ctx, "alice", sb.ID)
	c, _ := f.d.Inspect(ctx, sb.ContainerID)
	if got.State != StatePaused || c.State != runtime.StatePaused {
		t.Fatalf("state %s, container %s", got.State, c.State)
	}
	// While paused, the container's processes use no CPU at all: its CPU
	// time, read from the host, stands still over a window in which the
	// loop would otherwise have run.
	frozen := cpuNanos(t, sb.ContainerID)
	time.Sleep(300 * time.Millisecond) // an observation window, not a wait
	if after := cpuNanos(t, sb.ContainerID); after != frozen {
		t.Fatalf("a paused sandbox used %d ns of CPU", after-frozen)
	}
	// An exec resumes a paused sandbox, and the loop goes on.
	before := count()
	if got, _ := f.o.Get(ctx, "alice", sb.ID); got.State != StateRunning {
		t.Fatalf("an exec did not resume the paused sandbox: %s", got.State)
	}
	if _, err := f.o.Pause(ctx, "alice", sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.o.Resume(ctx, "alice", sb.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { return count() > before+100 })
	// Stop and delete work on a paused sandbox.
	if _, err := f.o.Pause(ctx, "alice", sb.ID); err != nil {
		t.Fatal(err)
	}
	if sb, err := f.o.Stop(ctx, "alice", sb.ID); err != nil || sb.State != StateStopped {
		t.Fatalf("stop a paused sandbox: %v %s", err, sb.State)
	}
}

// cpuNanos is the CPU time a container's processes have used, from its cgroup
// on the host (cgroup v1 with the cgroupfs driver, or cgroup v2).
func cpuNanos(t *testing.T, containerID string) int64 {
	t.Helper()
	if b, err := os.ReadFile("/sys/fs/cgroup/cpuacct/docker/" + containerID + "/cpuacct.usage"); err == nil {
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return n
	}
	for _, p := range []string{"/sys/fs/cgroup/docker/" + containerID, "/sys/fs/cgroup/system.slice/docker-" + containerID + ".scope"} {
		b, err := os.ReadFile(p + "/cpu.stat")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n * 1000
			}
		}
	}
	t.Fatalf("no CPU accounting found for container %s", containerID)
	return 0
}

// TestIdlePolicyCountsBusyProcesses: past its idle timeout, a sandbox whose
// processes use CPU stays running under the activity policy, and is stopped
// under the api policy; a sandbox whose process sleeps is stopped.
func TestIdlePolicyCountsBusyProcesses(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	f := newFixture(t, func(c *Config) { c.Now, c.ReapEvery = clk.Now, time.Hour })
	ctx := context.Background()
	start := func(sb Sandbox, sh string) {
		t.Helper()
		err := f.o.Attach(ctx, "alice", sb.ID, func(ctx context.Context, _ Sandbox, conn *agent.Conn) error {
			_, err := conn.StartProc(ctx, wire.ProcStart{Argv: []string{"sh", "-c", sh}})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	five := ptr(int64(5))
	busy := f.create(t, "alice", CreateOptions{IdleTimeout: five})
	busyAPI := f.create(t, "alice", CreateOptions{IdleTimeout: five, IdlePolicy: IdleAPI})
	quiet := f.create(t, "alice", CreateOptions{IdleTimeout: five})
	start(busy, "while :; do :; done")
	start(busyAPI, "while :; do :; done")
	start(quiet, "sleep 1000")
	clk.Advance(35 * time.Second) // every one is 30 s past its idle timeout by the API
	state := func(sb Sandbox) Sandbox {
		t.Helper()
		got, err := f.o.Get(ctx, "alice", sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(500 * time.Millisecond) {
		f.o.reap(ctx)
		if got := state(busy); got.State != StateRunning {
			t.Fatalf("the sandbox with a busy process was stopped: %s (%s)", got.State, got.Error)
		}
		if state(busyAPI).State == StateStopped && state(quiet).State == StateStopped {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("api-policy sandbox %s, quiet sandbox %s", state(busyAPI).State, state(quiet).State)
		}
	}
	if got := state(busy); got.AwakeBy != "processes using CPU" {
		t.Fatalf("awake by %q", got.AwakeBy)
	}
	if _, err := f.o.Update(ctx, "alice", busy.ID, UpdateOptions{IdlePolicy: ptr("sometimes")}); !cerrdefs.IsInvalidArgument(err) {
		t.Fatalf("an unknown idle policy: %v", err)
	}
}

// TestContainerThatExitedIsStartedAgain: a sandbox's container that exits
// behind bothy's back (its init killed, or out of memory) does not leave
// the sandbox "running" and unreachable: the next call records it as
// stopped, says why, and starts it again, files kept.
func TestContainerThatExitedIsStartedAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	sb := f.create(t, "alice", CreateOptions{})
	if code, out := f.exec(t, "alice", sb.ID, "echo kept > /root/f"); code != 0 {
		t.Fatalf("exec: %d %q", code, out)
	}
	if err := f.d.Stop(ctx, sb.ContainerID, 0); err != nil {
		t.Fatal(err)
	}
	if code, out := f.exec(t, "alice", sb.ID, "cat /root/f"); code != 0 || out != "kept\n" {
		t.Fatalf("the call after the container exited: %d %q", code, out)
	}
	if got, err := f.o.Get(ctx, "alice", sb.ID); err != nil || got.State != StateRunning {
		t.Fatalf("after the call: %+v %v", got, err)
	}
	// The reaper finds one that exits with no call coming, and says why.
	sb, _ = f.o.Get(ctx, "alice", sb.ID)
	if err := f.d.Stop(ctx, sb.ContainerID, 0); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		f.o.reap(ctx)
		got, err := f.o.Get(ctx, "alice", sb.ID)
		if err == nil && got.State == StateStopped && strings.Contains(got.Error, "exited") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reaper left %+v %v", got, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
