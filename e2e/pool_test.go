package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
)

// sandboxPool waits, up to two minutes, until the daemon's first sandbox pool
// satisfies ok, and returns it.
func sandboxPool(t *testing.T, c *api.Client, what string, ok func(api.SandboxPool) bool) api.SandboxPool {
	t.Helper()
	var last api.SandboxPool
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		list, err := c.Pools(context.Background())
		if err == nil && len(list.SandboxPools) == 1 {
			last = list.SandboxPools[0]
			if ok(last) {
				return last
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox pool is not %s: %+v %v", what, last, err)
		}
	}
}

// TestSandboxPool: a create that matches the warm pool's class gets a pooled
// sandbox that is its caller's alone: with its labels and environment, in
// its list, invisible to another key; the pool refills; a create that asks
// for other limits is cold.
func TestSandboxPool(t *testing.T) {
	testenv.Docker(t)
	const keyA = "e2e-pool-key-a-0123456789abcdefg"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY="+keyA, "BOTHY_DEFAULT_IMAGE=bothy/busybox", "BOTHY_SANDBOX_POOL=default:2")
	ctx := context.Background()
	a := api.NewClient(d.url, keyA)
	kb, err := a.CreateKey(ctx, api.CreateKeyRequest{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	b := api.NewClient(d.url, kb.Secret)
	sandboxPool(t, a, "full", func(p api.SandboxPool) bool { return p.Ready == 2 && p.Image == "bothy/busybox" })
	if r, err := a.Ready(ctx); err != nil || !r.SandboxPoolsWarm {
		t.Fatalf("readyz with a full pool: %+v %v", r, err)
	}

	sb, err := a.CreateSandbox(ctx, api.CreateSandboxRequest{Env: map[string]string{"GREETING": "hello"},
		Labels: map[string]string{"team": "a"}, Workdir: "/tmp"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if p := sandboxPool(t, a, "counted", func(p api.SandboxPool) bool { return p.Hits == 1 }); p.Misses != 0 {
		t.Fatalf("after a pooled create: %+v", p)
	}
	res, err := a.Exec(ctx, sb.ID, api.ExecRequest{Shell: `echo "$GREETING $(pwd) $(hostname)"`})
	if err != nil || res.Stdout != "hello /tmp "+sb.ID+"\n" {
		t.Fatalf("exec in a pooled sandbox: %+v %v", res, err)
	}
	got, err := a.GetSandbox(ctx, sb.ID)
	if err != nil || got.Labels["team"] != "a" || got.IdleTimeoutS != 900 || !slices.Equal(got.EnvKeys, []string{"GREETING"}) {
		t.Fatalf("the pooled sandbox as its owner sees it: %+v %v", got, err)
	}
	if list, err := a.ListSandboxes(ctx, api.ListOptions{}); err != nil || len(list.Sandboxes) != 1 || list.Sandboxes[0].ID != sb.ID {
		t.Fatalf("the owner's list: %+v %v", list, err)
	}
	// Nobody else's.
	if _, err := b.GetSandbox(ctx, sb.ID); !api.IsNotFound(err) {
		t.Fatalf("another key sees the pooled sandbox: %v", err)
	}
	if _, err := b.Exec(ctx, sb.ID, api.ExecRequest{Shell: "true"}); !api.IsNotFound(err) {
		t.Fatalf("another key execs in the pooled sandbox: %v", err)
	}
	if list, err := b.ListSandboxes(ctx, api.ListOptions{}); err != nil || len(list.Sandboxes) != 0 {
		t.Fatalf("another key's list: %+v %v", list, err)
	}
	// Another key's create takes another pooled sandbox.
	sbB, err := b.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil || sbB.ID == sb.ID {
		t.Fatalf("b's create: %+v %v", sbB, err)
	}
	sandboxPool(t, a, "refilled", func(p api.SandboxPool) bool { return p.Ready == 2 && p.Hits == 2 })

	// Other limits: a cold create, which the pool does not count.
	cold, err := a.CreateSandbox(ctx, api.CreateSandboxRequest{MemoryMB: 256}, "")
	if err != nil || cold.MemoryMB != 256 {
		t.Fatalf("cold create: %+v %v", cold, err)
	}
	if p := sandboxPool(t, a, "as it was", func(p api.SandboxPool) bool { return p.Ready == 2 }); p.Hits != 2 {
		t.Fatalf("after a cold create: %+v", p)
	}
	// Deleting a pooled sandbox is deleting a sandbox.
	if err := a.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetSandbox(ctx, sb.ID); !api.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

// TestSandboxPoolSurvivesSIGKILL kills bothy with SIGKILL while creates
// are claiming from a full pool, restarts it, and checks the engine against
// what bothy says: every container is a sandbox of its caller or a pooled
// one, none is both or lost, and the pool refills.
func TestSandboxPoolSurvivesSIGKILL(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-pool-kill-key-0123456789abcd"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_DEFAULT_IMAGE=bothy/busybox", "BOTHY_SANDBOX_POOL=default:3"}
	d := startDaemon(t, listen, data, env...)
	c := api.NewClient(d.url, key)
	ctx := context.Background()
	sandboxPool(t, c, "full", func(p api.SandboxPool) bool { return p.Ready == 3 })

	// Creates in flight, some claiming, some cold once the pool is empty,
	// when bothy dies.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var answered []string
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, ""); err == nil {
				mu.Lock()
				answered = append(answered, sb.ID)
				mu.Unlock()
			}
		}()
	}
	// Kill once the first claim has been counted.
	sandboxPool(t, c, "claimed from", func(p api.SandboxPool) bool { return p.Hits >= 1 })
	d.kill()
	wg.Wait()

	// A create the engine was still carrying out when bothy died leaves
	// a container made after the restart's reconcile: an orphan, removed
	// once older than the grace (shortened here to keep the test short).
	d = startDaemon(t, listen, data, append(env, "BOTHY_ORPHAN_GRACE=3s", "BOTHY_RECONCILE_EVERY=1s")...)
	c = api.NewClient(d.url, key)
	pool := sandboxPool(t, c, "refilled", func(p api.SandboxPool) bool { return p.Ready == 3 })

	owned, err := c.ListSandboxes(ctx, api.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, sb := range owned.Sandboxes {
		if ids[sb.ID] {
			t.Fatalf("%s listed twice", sb.ID)
		}
		ids[sb.ID] = true
	}
	// Every create that was answered has its sandbox, running.
	for _, id := range answered {
		sb, err := c.GetSandbox(ctx, id)
		if err != nil || sb.State != api.StateRunning {
			t.Errorf("answered sandbox %s after the restart: %+v %v", id, sb, err)
		}
	}
	// The engine holds exactly the owned sandboxes and the pool's.
	instance := instanceOf(t, data)
	var containers []string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		cs, err := testenv.Docker(t).List(ctx, map[string]string{runtime.LabelInstance: instance, runtime.LabelKind: runtime.KindSandbox})
		if err != nil {
			t.Fatal(err)
		}
		containers = containers[:0]
		for _, ct := range cs {
			containers = append(containers, ct.Labels[runtime.LabelID])
		}
		// A create cut short is finished off (its row and container
		// removed) by the restart's reconcile; settle before counting.
		if len(containers) == len(ids)+pool.Ready {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(containers)
			t.Fatalf("%d containers (%s) for %d owned sandboxes and %d pooled", len(containers), strings.Join(containers, " "), len(ids), pool.Ready)
		}
	}
	pooled := 0
	for _, id := range containers {
		if !ids[id] {
			pooled++
		}
	}
	if pooled != pool.Ready {
		t.Fatalf("%d containers are neither owned nor pooled", pooled-pool.Ready)
	}
	// A claim now hands out a pooled sandbox nobody owns yet.
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil || ids[sb.ID] {
		t.Fatalf("a create after the restart: %+v %v (owned before: %v)", sb, err, ids)
	}
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "echo ok"}); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("exec in it: %+v %v", res, err)
	}
	ids[sb.ID] = true

	// Restarted without pools, bothy deletes the pooled sandboxes on start
	// and keeps every owned one.
	d.stop(t)
	d = startDaemon(t, listen, data, append(env[:2:2], "BOTHY_SANDBOX_POOL=0")...)
	c = api.NewClient(d.url, key)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		cs, err := testenv.Docker(t).List(ctx, map[string]string{runtime.LabelInstance: instance, runtime.LabelKind: runtime.KindSandbox})
		if err != nil {
			t.Fatal(err)
		}
		left := 0
		for _, ct := range cs {
			if !ids[ct.Labels[runtime.LabelID]] {
				left++
			}
		}
		if left == 0 && len(cs) == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("without pools: %d containers, %d of them pooled, for %d owned sandboxes", len(cs), left, len(ids))
		}
	}
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "echo ok"}); err != nil || res.Stdout != "ok\n" {
		t.Fatalf("an owned sandbox without pools: %+v %v", res, err)
	}
}

// TestSandboxPoolBadImage: a pool whose sandboxes cannot start reports why
// and backs off instead of spinning; creates are still served, cold.
func TestSandboxPoolBadImage(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-pool-bad-key-0123456789abcde"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	// A registry on a loopback port nothing listens on: the pull is refused
	// at once, and no traffic leaves the machine.
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox", "BOTHY_SANDBOX_POOL=127.0.0.1:1/bothy-missing:2")
	c := api.NewClient(d.url, key)
	first := sandboxPool(t, c, "failing", func(p api.SandboxPool) bool { return p.Failures >= 1 && p.Error != "" })
	second := sandboxPool(t, c, "failing again", func(p api.SandboxPool) bool { return p.Failures >= first.Failures+1 })
	if first.BackoffMs < 1000 || second.BackoffMs < 2*first.BackoffMs || second.Ready != 0 {
		t.Fatalf("backoff after failures: %+v then %+v", first, second)
	}
	if r, err := c.Ready(context.Background()); err != nil || !r.Ready || r.SandboxPoolsWarm {
		t.Fatalf("readyz with a failing pool: %+v %v", r, err)
	}
	if sb, err := c.CreateSandbox(context.Background(), api.CreateSandboxRequest{}, ""); err != nil || sb.State != api.StateRunning {
		t.Fatalf("a create beside a failing pool: %+v %v", sb, err)
	}
}

// instanceOf is readInstance, failing the test when it cannot.
func instanceOf(t *testing.T, data string) string {
	t.Helper()
	instance, err := readInstance(data)
	if err != nil {
		t.Fatal(err)
	}
	return instance
}
