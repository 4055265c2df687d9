package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	bothyruntime "github.com/bothy/bothy/runtime"
)

// repoRoot is the module's root directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// TestMoveSandboxScript runs docs/examples/move-sandbox.sh between two
// bothyd servers, as between two hosts.
func TestMoveSandboxScript(t *testing.T) {
	const keyA, keyB = "e2e-host-a-key-0123456789abcdef", "e2e-host-b-key-0123456789abcdef"
	a, sb := startWithSandbox(t, keyA)
	dataB := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, dataB) })
	b := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), dataB,
		"BOTHY_ADMIN_KEY="+keyB, "BOTHY_DEFAULT_IMAGE=bothy/busybox")
	ctx := context.Background()
	ca, cb := api.NewClient(a.url, keyA), api.NewClient(b.url, keyB)
	res, err := ca.Exec(ctx, sb.ID, api.ExecRequest{Shell: "mkdir -p /work && echo moved-$((7*6)) > /work/state && head -c 1048576 /dev/urandom > /work/blob && md5sum /work/blob"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("prepare: %v %+v", err, res)
	}
	sum := res.Stdout

	cmd := exec.Command("bash", filepath.Join(repoRoot(), "docs", "examples", "move-sandbox.sh"), sb.ID)
	cmd.Env = append(os.Environ(), "BOTHY="+filepath.Join(binaries(t), "bothy"),
		"FROM_URL="+a.url, "FROM_KEY="+keyA, "TO_URL="+b.url, "TO_KEY="+keyB)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("move-sandbox.sh: %v %s", err, out)
	}
	moved := strings.TrimSpace(string(out))
	res, err = cb.Exec(ctx, moved, api.ExecRequest{Shell: "cat /work/state && md5sum /work/blob"})
	if err != nil || res.Stdout != "moved-42\n"+sum {
		t.Fatalf("on the second host: %q %v", res.Stdout, err)
	}
}

// TestKillDuringCheckpoint: bothy killed with SIGKILL in the middle of a
// checkpoint leaves no incomplete snapshot marked ready and no sandbox paused.
func TestKillDuringCheckpoint(t *testing.T) {
	const key = "e2e-crash-key-0123456789abcdef"
	testenv.Docker(t)
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, listen, data, "BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox")
	c := api.NewClient(d.url, key)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "head -c 400000000 /dev/urandom > /big"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("write: %v %+v", err, res)
	}
	go func() { _, _ = c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "interrupted"}) }()
	eng := testenv.Docker(t)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cont, err := eng.Inspect(ctx, "bothy-"+sb.ID)
		if err == nil && cont.State == "paused" {
			break // mid-checkpoint
		}
		if time.Now().After(deadline) {
			t.Fatal("the checkpoint never paused the sandbox")
		}
		time.Sleep(5 * time.Millisecond)
	}
	killedAt := time.Now()
	d.kill()
	// The restarted bothy reconciles every second and removes what no
	// record owns after a second.
	d = startDaemon(t, listen, data, "BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox",
		"BOTHY_ORPHAN_GRACE=1s", "BOTHY_RECONCILE_EVERY=1s")
	c = api.NewClient(d.url, key)
	// No sandbox stays paused.
	deadline = time.Now().Add(30 * time.Second)
	for {
		cont, err := eng.Inspect(ctx, "bothy-"+sb.ID)
		if err == nil && cont.State == "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox stayed %s", cont.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}); err != nil || res.ExitCode != 0 {
		t.Fatalf("exec after the crash: %v %+v", err, res)
	}
	// Any snapshot listed is whole: a sandbox restores from it with the file.
	list, err := c.ListSnapshots(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, sn := range list.Snapshots {
		clone, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: sn.ID}, "")
		if err != nil {
			t.Fatalf("listed snapshot %s does not restore: %v", sn.ID, err)
		}
		res, err := c.Exec(ctx, clone.ID, api.ExecRequest{Shell: "wc -c < /big"})
		if err != nil || strings.TrimSpace(res.Stdout) != "400000000" {
			t.Fatalf("listed snapshot %s is incomplete: %q %v", sn.ID, res.Stdout, err)
		}
	}
	t.Logf("%d snapshot(s) survived the crash, all whole", len(list.Snapshots))

	// The engine finishes the commit bothy was killed in (it says so with
	// a commit event); the image it makes belongs to no snapshot that
	// bothy knows, and reconcile removes it.
	deadline = time.Now().Add(3 * time.Minute)
	for {
		out, err := exec.Command("docker", "events", "--since", strconv.FormatInt(killedAt.Add(-time.Minute).Unix(), 10),
			"--until", strconv.FormatInt(time.Now().Unix(), 10), "--filter", "event=commit",
			"--filter", "container=bothy-"+sb.ID, "--format", "{{.Action}}").Output()
		if err == nil && strings.Contains(string(out), "commit") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the engine never finished the interrupted commit: %v %s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	known := map[string]bool{}
	if list, err = c.ListSnapshots(ctx, ""); err != nil {
		t.Fatal(err)
	}
	for _, sn := range list.Snapshots {
		known[sn.ID] = true
	}
	orphans := func() []string {
		imgs, err := eng.ImageList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, img := range imgs {
			if img.Labels[bothyruntime.LabelKind] == bothyruntime.KindSnapshot && len(img.Tags) > 0 && !known[img.Labels[bothyruntime.LabelID]] &&
				img.Labels[bothyruntime.LabelID] != "" && strings.HasPrefix(img.Tags[0], "bothy/snapshot:") &&
				img.Created.After(killedAt.Add(-time.Minute)) && img.Labels[bothyruntime.LabelOwner] != "" && isOurs(img.Labels, data) {
				out = append(out, img.Tags[0])
			}
		}
		return out
	}
	t.Logf("after the commit event: images no snapshot owns: %v", orphans())
	deadline = time.Now().Add(time.Minute)
	for len(orphans()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("images no snapshot owns are still there: %v", orphans())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// isOurs says labels carry the instance of the bothy whose data is data.
func isOurs(labels map[string]string, data string) bool {
	b, err := os.ReadFile(filepath.Join(data, "instance"))
	return err == nil && labels[bothyruntime.LabelInstance] == strings.TrimSpace(string(b))
}
