package fake_test

import (
	"context"
	"testing"
	"time"

	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/conformance"
	"github.com/bothy/bothy/runtime/fake"
)

// The orchestrator takes the fake for these interfaces.
var _ conformance.Engine = (*fake.Engine)(nil)

func TestFakePassesTheConformanceSuite(t *testing.T) {
	e := fake.New(runtime.EngineInfo{})
	e.AddImage(runtime.Image{Tags: []string{"busybox"}})
	conformance.Run(t, conformance.Setup{Engine: e, Image: "busybox", Instance: "fake", Bridge: "btyconf0"})
	left, _ := e.List(context.Background(), nil)
	nets, _ := e.Networks(context.Background(), nil)
	if len(left) > 0 || len(nets) > 0 {
		t.Fatalf("left behind: %d containers, networks %v", len(left), nets)
	}
}

// TestBootRunsWhileTheContainerRuns: a started container runs Boot until it
// stops, and Boot returning is the container exiting.
func TestBootRunsWhileTheContainerRuns(t *testing.T) {
	ctx := context.Background()
	e := fake.New(runtime.EngineInfo{})
	e.AddImage(runtime.Image{Tags: []string{"img"}})
	booted := make(chan context.Context, 1)
	exit := make(chan int)
	e.Boot = func(ctx context.Context, spec runtime.Spec, _ string) int {
		booted <- ctx
		select {
		case <-ctx.Done():
			return 0
		case code := <-exit:
			return code
		}
	}
	id, err := e.Create(ctx, runtime.Spec{Image: "img"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	bctx := <-booted
	if err := e.Stop(ctx, id, 0); err != nil {
		t.Fatal(err)
	}
	if bctx.Err() == nil {
		t.Fatal("stop did not end Boot's context")
	}
	if err := e.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	<-booted
	exit <- 3
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the container did not exit when Boot returned")
		}
		c, err := e.Inspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == runtime.StateExited {
			if c.ExitCode != 3 {
				t.Fatalf("exit code %d, want 3", c.ExitCode)
			}
			break
		}
	}
	if err := e.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
}
