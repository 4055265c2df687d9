package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// TestRegistry: a bothy with --registry publishes the base image it makes
// and every snapshot it takes, a sandbox restored from a snapshot whose
// image the engine no longer has starts from the registry's copy, and a
// deleted snapshot's copy goes with it: on a loopback registry over plain
// HTTP, and on one over TLS from a CA of its own (--registry-ca) that asks
// for a user and password.
func TestRegistry(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		reg := testenv.Registry(t)
		checkRegistry(t, reg, nil, nil, func(repository string) []string { return testenv.RegistryTags(t, reg, repository) })
	})
	t.Run("tls with credentials", func(t *testing.T) {
		reg := testenv.NewSecureRegistry(t)
		checkRegistry(t, reg.Addr, []string{"--registry-ca", reg.CAFile},
			[]string{"BOTHY_REGISTRY_USER=" + reg.User, "BOTHY_REGISTRY_PASSWORD=" + reg.Password},
			func(repository string) []string { return reg.Tags(t, repository) })
	})
}

func checkRegistry(t *testing.T, reg string, args, env []string, tagsOf func(repository string) []string) {
	d := testenv.Docker(t)
	const key = "e2e-registry-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	daemon := startDaemonArgs(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, append([]string{"--registry", reg}, args...),
		append([]string{"BOTHY_ADMIN_KEY=" + key}, env...)...)
	c := api.NewClient(daemon.url, key)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "echo from the registry > /root/kept && head -c 1048576 /dev/urandom > /root/random"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("%v %+v", err, res)
	}
	sum, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "sha256sum /root/random"})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "pushed"})
	if err != nil {
		t.Fatal(err)
	}
	if tags := tagsOf("bothy/snapshot"); !slices.Contains(tags, snap.ID) {
		t.Fatalf("the registry holds %v of bothy/snapshot, not %s", tags, snap.ID)
	}
	// The base image is published at start, in the background.
	for deadline := time.Now().Add(2 * time.Minute); len(tagsOf("bothy/base")) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the base image was not published")
		}
	}
	// The engine loses the snapshot's image; a restore fetches it.
	ref := "bothy/snapshot:" + snap.ID
	if err := d.ImageRemove(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ImageInspect(ctx, ref); !cerrdefs.IsNotFound(err) {
		t.Fatalf("the snapshot's image is still in the engine: %v", err)
	}
	restored, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: snap.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, restored.ID, api.ExecRequest{Shell: "cat /root/kept && sha256sum /root/random"})
	if err != nil || res.ExitCode != 0 || res.Stdout != "from the registry\n"+sum.Stdout {
		t.Fatalf("restored from the registry: %v %+v, want %q", err, res, sum.Stdout)
	}
	for _, id := range []string{sb.ID, restored.ID} {
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	if tags := tagsOf("bothy/snapshot"); slices.Contains(tags, snap.ID) {
		t.Fatalf("the deleted snapshot's copy is still in the registry: %v", tags)
	}
}
