package e2e

import (
	"archive/tar"
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	bothyruntime "github.com/bothy/bothy/runtime"
)

// TestKillMidWayLosesNothing: bothy killed with SIGKILL in the middle
// of a whole restore, and in the middle of an archive upload, leaves the
// sandbox whole: after a restart it is either as it was or as the snapshot
// was, on one container, and an upload cut short leaves its directory as
// it was, with nothing staged left behind.
func TestKillMidWayLosesNothing(t *testing.T) {
	const key = "e2e-kill-key-0123456789abcdefgh"
	testenv.Docker(t)
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_DEFAULT_IMAGE=bothy/busybox",
		"BOTHY_ORPHAN_GRACE=1s", "BOTHY_RECONCILE_EVERY=1s"}
	d := startDaemon(t, listen, data, env...)
	c := api.NewClient(d.url, key)
	ctx := context.Background()
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	sh := func(line string) string {
		t.Helper()
		res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: line})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %v %+v", line, err, res)
		}
		return res.Stdout
	}
	sh("mkdir -p /data && echo v1 > /data/keep")
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	sh("echo v2 > /data/keep && echo new > /data/extra")

	// A whole restore, killed once its new container exists beside the
	// old one (events since now: the command may subscribe after it).
	eng := testenv.Docker(t)
	old, err := eng.List(ctx, map[string]string{bothyruntime.LabelID: sb.ID})
	if err != nil || len(old) != 1 {
		t.Fatalf("the sandbox's container: %v %v", old, err)
	}
	since := fmt.Sprintf("%.9f", float64(time.Now().UnixNano())/1e9)
	events := exec.Command("docker", "events", "--since", since, "--filter", "type=container", "--filter", "event=create",
		"--filter", "label="+bothyruntime.LabelID+"="+sb.ID, "--format", "{{.ID}}")
	out, err := events.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.Process.Kill(); _ = events.Wait() })
	created := make(chan string, 1)
	go func() {
		br := bufio.NewReader(out)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if id := strings.TrimSpace(line); id != old[0].ID {
				created <- id
				return
			}
		}
	}()
	restored := make(chan error, 1)
	go func() { _, err := c.RestoreSandbox(ctx, sb.ID, snap.ID); restored <- err }()
	select {
	case err := <-restored:
		t.Fatalf("the restore ended before its new container was seen: %v", err)
	case <-created:
	case <-time.After(2 * time.Minute):
		t.Fatal("the restore never made its new container")
	}
	d.kill()
	d = startDaemon(t, listen, data, env...)
	c = api.NewClient(d.url, key)
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		cs, err := eng.List(ctx, map[string]string{bothyruntime.LabelID: sb.ID})
		if err == nil && len(cs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox is on %d containers a minute after the restart: %v", len(cs), err)
		}
	}
	got := sh("cat /data/keep; ls /data")
	switch got {
	case "v1\nkeep\n":
		t.Logf("the restore was done when bothy died")
	case "v2\nextra\nkeep\n":
		t.Logf("the restore was undone")
	default:
		t.Fatalf("after the restore was killed, /data holds %q: neither the snapshot's nor the old", got)
	}
	before := sh("ls -A /data")

	// An archive upload into /data, killed after 32 MiB of its 256 MiB.
	pr, pw := io.Pipe()
	var sent atomic.Int64
	go func() {
		tw := tar.NewWriter(pw)
		const size = 256 << 20
		if err := tw.WriteHeader(&tar.Header{Name: "big", Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			pw.CloseWithError(err)
			return
		}
		chunk := make([]byte, 64<<10)
		for n := 0; n < size; n += len(chunk) {
			if _, err := tw.Write(chunk); err != nil {
				pw.CloseWithError(err)
				return
			}
			sent.Add(int64(len(chunk)))
		}
		pw.CloseWithError(tw.Close())
	}()
	req, _ := http.NewRequest(http.MethodPut, d.url+"/v1/sandboxes/"+sb.ID+"/archive?path=/data", pr)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/x-tar")
	go func() {
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(2 * time.Minute); sent.Load() < 32<<20; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the upload sent %d bytes in two minutes", sent.Load())
		}
	}
	d.kill()
	pr.CloseWithError(io.ErrClosedPipe)
	d = startDaemon(t, listen, data, env...)
	c = api.NewClient(d.url, key)
	// The agent drops what it staged once its channel is gone.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		now := sh("ls -A /data")
		if now == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the upload was killed, /data holds %q, not %q", now, before)
		}
	}
}
