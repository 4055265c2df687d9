package isolate

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
)

func newShareService(t *testing.T, maxTotal, perKey int) *Service {
	t.Helper()
	ctx := context.Background()
	d := testenv.Docker(t)
	data := testenv.DataDir(t)
	log := testenv.Logger(t)
	sq, b := testenv.DB(t, data), images.New(d, testenv.Logger(t), "", filepath.Join(data, "build"))
	t.Cleanup(b.Close)
	instance := "sharetest-" + filepath.Base(data)
	s, err := New(ctx, Config{
		Instance: instance, DataDir: data, AgentHost: testenv.AgentBinary(t),
		Images: map[string]string{
			wire.RuntimePython: images.RunnerPython, wire.RuntimeNode: images.RunnerNode, wire.RuntimeBash: images.RunnerBash,
		},
		MinIdle:  map[string]int{wire.RuntimePython: 0, wire.RuntimeNode: 0, wire.RuntimeBash: 0},
		MaxTotal: maxTotal, MaxPerKey: perKey,
	}, d, b, sq, log)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		s.Close()
		cs, _ := d.List(context.Background(), map[string]string{runtime.LabelInstance: instance})
		for _, c := range cs {
			_ = d.Remove(context.Background(), c.ID)
		}
	})
	return s
}

func (s *Service) runnersNow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

func bashRun(t *testing.T, s *Service, ctx context.Context, owner, code string, memoryMB int64) error {
	t.Helper()
	_, err := s.Run(ctx, owner, RunOptions{Runtime: wire.RuntimeBash, Code: code, MemoryMB: memoryMB, Timeout: time.Minute}, io.Discard, io.Discard)
	return err
}

// TestPoolClassesAreFixed: runs asking for 40 different memory sizes share
// the pools of a few fixed classes, and never make more runners than the
// server-wide cap.
func TestPoolClassesAreFixed(t *testing.T) {
	t.Parallel()
	s := newShareService(t, 4, 4)
	for mb := int64(64); mb < 104; mb++ {
		if err := bashRun(t, s, context.Background(), "k", "true", mb); err != nil {
			t.Fatalf("memory_mb %d: %v", mb, err)
		}
		if n := s.runnersNow(); n > 4 {
			t.Fatalf("%d runners, over the cap of 4", n)
		}
	}
	var bash []int64
	for _, p := range s.Pools() {
		if p.Runtime == wire.RuntimeBash {
			bash = append(bash, p.MemoryMB)
		}
	}
	if len(bash) != 2 { // the default class and 128 MiB
		t.Fatalf("bash pools: %v", bash)
	}
}

// TestRunnersAreSharedFairly: keys that leave runners leased to themselves do
// not keep another key out, and one key cannot hold more than its share.
func TestRunnersAreSharedFairly(t *testing.T) {
	t.Parallel()
	s := newShareService(t, 4, 2)
	ctx := context.Background()
	// Two keys each keep two runners leased (two runs at once, each).
	for _, owner := range []string{"k1", "k2"} {
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- bashRun(t, s, ctx, owner, "sleep 1", 0)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("%s: %v", owner, err)
			}
		}
	}
	if n := s.runnersNow(); n != 4 {
		t.Fatalf("%d runners after two keys' runs, want the cap of 4", n)
	}
	// A third key still runs: a waiting runner is reclaimed for it.
	if err := bashRun(t, s, ctx, "k3", "echo hi", 0); err != nil {
		t.Fatalf("a third key at the cap: %v", err)
	}
	if n := s.runnersNow(); n > 4 {
		t.Fatalf("%d runners, over the cap", n)
	}
	// A key holding its share of running runners is refused a third, at
	// once and with 429's class, while other keys are not.
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = bashRun(t, s, runCtx, "greedy", "sleep 60", 0) }()
	}
	deadline := time.Now().Add(time.Minute)
	for {
		s.mu.Lock()
		held := s.held["greedy"]
		s.mu.Unlock()
		if held == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the greedy key's runs did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	err := bashRun(t, s, ctx, "greedy", "true", 0)
	if !cerrdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "share") {
		t.Fatalf("a third runner for a key with a share of 2: %v", err)
	}
	if err := bashRun(t, s, ctx, "k4", "true", 0); err != nil {
		t.Fatalf("another key while one holds its share: %v", err)
	}
	cancel()
	wg.Wait()
	if err := bashRun(t, s, ctx, "greedy", "true", 0); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("the greedy key after its runs ended: %v", err)
	}
}
