package orchestrator

// The orchestrator's own logic (its state machine, reconcile, the idle and
// TTL reaper, idempotent create) on the in-memory engine: these run without
// Docker, in `make test-unit`. A fake container's "process" is a sandbox
// agent served in this test process: it dials the sandbox's socket as the
// real one does from inside the container, so the orchestrator sees a
// sandbox come up exactly as it does on the real engine.

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/fake"
)

// The engines the orchestrator takes.
var (
	_ Runtime = (*fake.Engine)(nil)
	_ Images  = testenv.FakeImages{}
)

const fakeImage = "bothy/busybox"

// clock is a test's time: it moves only when the test advances it.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fakeFixture struct {
	o     *Orchestrator
	e     *fake.Engine
	clock *clock
	cfg   Config
	data  string
}

// newFakeFixture is an orchestrator over the fake engine. Its loops do not
// run: the tests call Reconcile and reap themselves.
func newFakeFixture(t *testing.T) *fakeFixture {
	t.Helper()
	return newFakeFixtureOn(t, TransportUnix)
}

// newFakeFixtureOn is newFakeFixture with new sandboxes on transport.
func newFakeFixtureOn(t *testing.T, transport string) *fakeFixture {
	t.Helper()
	data := testenv.DataDir(t)
	e := testenv.FakeEngine(t, fakeImage)
	f := &fakeFixture{e: e, clock: &clock{t: time.Now()}, data: data}
	f.cfg = Config{
		Instance: testenv.Instance("fake"), DataDir: data, AgentBinary: filepath.Join(data, "agent-binary"),
		Network: "bothy-fake", DefaultImage: fakeImage, Now: f.clock.Now,
		OrphanGrace: time.Minute, ReadyTimeout: 10 * time.Second, Transport: transport,
	}
	if err := os.WriteFile(f.cfg.AgentBinary, []byte("not a real agent: fake containers run none"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.open(t)
	t.Cleanup(func() {
		f.o.Close()
		cs, _ := e.List(context.Background(), nil)
		for _, c := range cs {
			_ = e.Remove(context.Background(), c.ID)
		}
	})
	return f
}

// open makes a new orchestrator over the fixture's engine and database, as
// a restart of bothy does.
func (f *fakeFixture) open(t *testing.T) {
	t.Helper()
	o, err := New(context.Background(), f.cfg, f.e, testenv.FakeImages{Image: fakeImage}, testenv.DB(t, f.data), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.o = o
}

func (f *fakeFixture) create(t *testing.T, owner string, opts CreateOptions) Sandbox {
	t.Helper()
	sb, _, err := f.o.Create(context.Background(), owner, opts)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return sb
}

// expect checks the sandbox's state in the store and its container's in the
// engine.
func (f *fakeFixture) expect(t *testing.T, owner, id string, want State, container runtime.State) {
	t.Helper()
	sb, err := f.o.Get(context.Background(), owner, id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	if sb.State != want {
		t.Fatalf("sandbox %s is %s (%s), want %s", id, sb.State, sb.Error, want)
	}
	c, err := f.e.Inspect(context.Background(), sb.ContainerID)
	if err != nil {
		t.Fatalf("inspect %s: %v", sb.ContainerID, err)
	}
	if c.State != container {
		t.Fatalf("container of %s is %s, want %s", id, c.State, container)
	}
}

// ping reaches the sandbox's agent through Attach, as every data-plane call
// does.
func (f *fakeFixture) ping(ctx context.Context, owner, id string) error {
	return f.o.Attach(ctx, owner, id, func(ctx context.Context, _ Sandbox, conn *agent.Conn) error {
		return conn.Ping(ctx)
	})
}

// TestStateMachineOnTheFakeEngine walks a sandbox's states on each
// transport of the agent channel (on the network one, the fake's agents
// listen on their containers' loopback addresses, with mutual TLS).
func TestStateMachineOnTheFakeEngine(t *testing.T) {
	for _, transport := range []string{TransportUnix, TransportTCP} {
		t.Run(transport, func(t *testing.T) { stateMachine(t, transport) })
	}
}

func stateMachine(t *testing.T, transport string) {
	f := newFakeFixtureOn(t, transport)
	ctx := context.Background()
	sb := f.create(t, "k1", CreateOptions{Labels: map[string]string{"app": "x"}})
	f.expect(t, "k1", sb.ID, StateRunning, runtime.StateRunning)
	if sb.Spec.Transport != transport {
		t.Fatalf("the sandbox is on %q, want %q", sb.Spec.Transport, transport)
	}
	c, _ := f.e.Inspect(ctx, sb.ContainerID)
	if c.Labels[runtime.LabelOwner] != "k1" || c.Labels[runtime.LabelID] != sb.ID || c.Labels[runtime.LabelInstance] != f.cfg.Instance {
		t.Fatalf("container labels %v", c.Labels)
	}
	if _, err := f.o.Get(ctx, "k2", sb.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's get: %v, want not found", err)
	}
	if err := f.ping(ctx, "k1", sb.ID); err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name      string
		op        func(ctx context.Context, owner, id string) (Sandbox, error)
		want      State
		container runtime.State
	}{
		{"stop", f.o.Stop, StateStopped, runtime.StateExited},
		{"stop again", f.o.Stop, StateStopped, runtime.StateExited},
		{"start", f.o.Start, StateRunning, runtime.StateRunning},
		{"pause", f.o.Pause, StatePaused, runtime.StatePaused},
		{"resume", f.o.Resume, StateRunning, runtime.StateRunning},
		{"pause again", f.o.Pause, StatePaused, runtime.StatePaused},
		{"stop a paused sandbox", f.o.Stop, StateStopped, runtime.StateExited},
	}
	for _, s := range steps {
		got, err := s.op(ctx, "k1", sb.ID)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got.State != s.want {
			t.Fatalf("%s: answered %s, want %s", s.name, got.State, s.want)
		}
		f.expect(t, "k1", sb.ID, s.want, s.container)
	}
	if _, err := f.o.Pause(ctx, "k1", sb.ID); !cerrdefs.IsConflict(err) && !cerrdefs.IsFailedPrecondition(err) {
		t.Fatalf("pause of a stopped sandbox: %v, want a conflict", err)
	}
	// A restarted bothy reaches the running sandbox again (on the network
	// transport, it dials the agent anew with credentials issued again).
	if _, err := f.o.Start(ctx, "k1", sb.ID); err != nil {
		t.Fatal(err)
	}
	f.o.Close()
	f.open(t)
	if err := f.ping(ctx, "k1", sb.ID); err != nil {
		t.Fatalf("ping after a restart of bothy: %v", err)
	}
	if _, err := f.o.Stop(ctx, "k1", sb.ID); err != nil {
		t.Fatal(err)
	}
	// A data-plane call wakes a stopped sandbox.
	if err := f.ping(ctx, "k1", sb.ID); err != nil {
		t.Fatalf("ping a stopped sandbox: %v", err)
	}
	f.expect(t, "k1", sb.ID, StateRunning, runtime.StateRunning)
	if _, err := f.o.Stop(ctx, "k2", sb.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's stop: %v, want not found", err)
	}
	if err := f.o.Delete(ctx, "k1", sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.o.Get(ctx, "k1", sb.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("get after delete: %v", err)
	}
	if cs, _ := f.e.List(ctx, nil); len(cs) != 0 {
		t.Fatalf("containers left after delete: %+v", cs)
	}
	if err := f.o.Delete(ctx, "k1", sb.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("delete twice: %v, want not found", err)
	}
}

// TestWakeOnTheFakeEngine: Wake starts a stopped sandbox and resumes a
// paused one, saying it did; a running one is left as it is; another key's
// is not found.
func TestWakeOnTheFakeEngine(t *testing.T) {
	f := newFakeFixture(t)
	ctx := context.Background()
	sb := f.create(t, "k1", CreateOptions{})
	for _, step := range []struct {
		name  string
		op    func(ctx context.Context, owner, id string) (Sandbox, error)
		woken bool
	}{
		{"running", nil, false},
		{"stopped", f.o.Stop, true},
		{"paused", f.o.Pause, true},
	} {
		if step.op != nil {
			if _, err := step.op(ctx, "k1", sb.ID); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
		}
		got, err := f.o.Wake(ctx, "k1", sb.ID)
		if err != nil || got.State != StateRunning || got.Woken != step.woken {
			t.Fatalf("wake a %s sandbox: %s woken=%v %v", step.name, got.State, got.Woken, err)
		}
		f.expect(t, "k1", sb.ID, StateRunning, runtime.StateRunning)
	}
	if _, err := f.o.Wake(ctx, "k2", sb.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's wake: %v, want not found", err)
	}
}

func TestIdempotentCreateOnTheFakeEngine(t *testing.T) {
	f := newFakeFixture(t)
	ctx := context.Background()
	opts := CreateOptions{IdempotencyKey: "req-1"}
	first, replayed, err := f.o.Create(ctx, "k1", opts)
	if err != nil || replayed {
		t.Fatalf("first create: %v, replayed %v", err, replayed)
	}
	again, replayed, err := f.o.Create(ctx, "k1", opts)
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("second create: %s (replayed %v), %v; want %s replayed", again.ID, replayed, err, first.ID)
	}
	other, replayed, err := f.o.Create(ctx, "k2", opts)
	if err != nil || replayed || other.ID == first.ID {
		t.Fatalf("another key's create with the same idempotency key: %s (replayed %v), %v", other.ID, replayed, err)
	}
	if cs, _ := f.e.List(ctx, nil); len(cs) != 2 {
		t.Fatalf("%d containers, want 2", len(cs))
	}
	// Once the sandbox is gone, the key makes a new one.
	if err := f.o.Delete(ctx, "k1", first.ID); err != nil {
		t.Fatal(err)
	}
	third, replayed, err := f.o.Create(ctx, "k1", opts)
	if err != nil || replayed || third.ID == first.ID {
		t.Fatalf("create after delete: %s (replayed %v), %v", third.ID, replayed, err)
	}
}

func TestReconcileOnTheFakeEngine(t *testing.T) {
	f := newFakeFixture(t)
	ctx := context.Background()
	vanished := f.create(t, "k1", CreateOptions{})
	exited := f.create(t, "k1", CreateOptions{})
	kept := f.create(t, "k1", CreateOptions{})
	if err := f.e.Remove(ctx, vanished.ContainerID); err != nil {
		t.Fatal(err)
	}
	if err := f.e.Stop(ctx, exited.ContainerID, 0); err != nil {
		t.Fatal(err)
	}
	orphan, err := f.e.Create(ctx, runtime.Spec{Image: fakeImage, Labels: map[string]string{
		runtime.LabelInstance: f.cfg.Instance, runtime.LabelKind: runtime.KindSandbox, runtime.LabelID: "sb-orphan",
	}})
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := f.e.Create(ctx, runtime.Spec{Image: fakeImage, Labels: map[string]string{runtime.LabelKind: runtime.KindSandbox}})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.o.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	sb, _ := f.o.Get(ctx, "k1", vanished.ID)
	if sb.State != StateFailed || !strings.Contains(sb.Error, "disappeared") {
		t.Fatalf("sandbox whose container vanished: %s (%s), want failed", sb.State, sb.Error)
	}
	f.expect(t, "k1", exited.ID, StateStopped, runtime.StateExited)
	f.expect(t, "k1", kept.ID, StateRunning, runtime.StateRunning)
	if _, err := f.e.Inspect(ctx, orphan); err != nil {
		t.Fatalf("an orphan younger than the grace period was removed: %v", err)
	}
	f.clock.Advance(f.cfg.OrphanGrace + time.Second)
	if err := f.o.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Inspect(ctx, orphan); !cerrdefs.IsNotFound(err) {
		t.Fatalf("an orphan past the grace period is still there: %v", err)
	}
	if _, err := f.e.Inspect(ctx, stranger); err != nil {
		t.Fatalf("a container without this instance's label was touched: %v", err)
	}

	// A restarted orchestrator adopts the running sandbox: its agent dials
	// the new endpoint, and calls reach it.
	f.o.Close()
	f.open(t)
	f.expect(t, "k1", kept.ID, StateRunning, runtime.StateRunning)
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := f.ping(waitCtx, "k1", kept.ID); err != nil {
		t.Fatalf("call into an adopted sandbox: %v", err)
	}

	// A create interrupted by a crash (its row still creating) is undone.
	interrupted := Sandbox{ID: newID("sb-", 8), Owner: "k1", State: StateCreating, Image: fakeImage,
		CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now(), LastActiveAt: f.clock.Now(), token: newID("", 24)}
	if err := f.o.store.insert(ctx, &interrupted); err != nil {
		t.Fatal(err)
	}
	if err := f.o.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.o.Get(ctx, "k1", interrupted.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("an interrupted create is still there: %v", err)
	}
}

func TestReaperOnTheFakeEngine(t *testing.T) {
	f := newFakeFixture(t)
	ctx := context.Background()
	// Under the api policy only calls count: the in-process agent's CPU
	// figures are the test host's, not a sandbox's.
	idle := f.create(t, "k1", CreateOptions{IdleTimeout: ptr(int64(60)), IdlePolicy: IdleAPI})
	busy := f.create(t, "k1", CreateOptions{IdleTimeout: ptr(int64(60)), IdlePolicy: IdleAPI})
	mortal := f.create(t, "k1", CreateOptions{TTLSeconds: ptr(int64(3600))})
	forever := f.create(t, "k1", CreateOptions{IdleTimeout: ptr(int64(0))})

	f.o.reap(ctx)
	f.expect(t, "k1", idle.ID, StateRunning, runtime.StateRunning)

	// busy has a call in flight while the reaper runs, past its idle time.
	inCall := make(chan struct{})
	release := make(chan struct{})
	callDone := make(chan error, 1)
	go func() {
		callDone <- f.o.Attach(ctx, "k1", busy.ID, func(context.Context, Sandbox, *agent.Conn) error {
			close(inCall)
			<-release
			return nil
		})
	}()
	<-inCall
	f.clock.Advance(61 * time.Second)
	f.o.reap(ctx)
	f.expect(t, "k1", idle.ID, StateStopped, runtime.StateExited)
	f.expect(t, "k1", busy.ID, StateRunning, runtime.StateRunning)
	f.expect(t, "k1", forever.ID, StateRunning, runtime.StateRunning)
	f.expect(t, "k1", mortal.ID, StateRunning, runtime.StateRunning)
	close(release)
	if err := <-callDone; err != nil {
		t.Fatal(err)
	}
	// The call's end is activity: the idle time counts from there.
	f.o.reap(ctx)
	f.expect(t, "k1", busy.ID, StateRunning, runtime.StateRunning)
	f.clock.Advance(61 * time.Second)
	f.o.reap(ctx)
	f.expect(t, "k1", busy.ID, StateStopped, runtime.StateExited)

	f.clock.Advance(time.Hour)
	f.o.reap(ctx)
	if _, err := f.o.Get(ctx, "k1", mortal.ID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("a sandbox past its TTL: %v, want deleted", err)
	}
	f.expect(t, "k1", forever.ID, StateRunning, runtime.StateRunning)
}

func ptr[T any](v T) *T { return &v }
