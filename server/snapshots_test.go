package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/bothy/bothy/api"
)

func TestSnapshotCheckpointAndRestore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	sh := func(id, shell string) string { t.Helper(); return mustShell(t, c, id, shell) }
	// tree lists every path under /data with its content's checksum.
	tree := func(id string) string {
		return sh(id, "cd /data && find . | sort && find . -type f | sort | xargs md5sum")
	}
	sh(sb.ID, "mkdir -p /data/sub && echo one > /data/a && echo two > /data/b && echo three > /data/sub/c && chmod 600 /data/a")
	before := tree(sb.ID)
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "before", Labels: map[string]string{"step": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if snap.SandboxID != sb.ID || snap.BaseImage == "" || snap.Labels["step"] != "1" {
		t.Fatalf("snapshot %+v", snap)
	}
	sh(sb.ID, "echo changed > /data/a && rm /data/b && echo new > /data/d")
	after := tree(sb.ID)
	if after == before {
		t.Fatal("the change changed nothing")
	}

	// A new sandbox from the snapshot has the checkpoint; the original keeps
	// its own state.
	clone, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: snap.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	if got := tree(clone.ID); got != before {
		t.Fatalf("clone:\n%s\nwant\n%s", got, before)
	}
	if got := tree(sb.ID); got != after {
		t.Fatal("restoring into a new sandbox changed the original")
	}

	// Restore in place: same ID, the checkpoint's files.
	restored, err := c.RestoreSandbox(ctx, sb.ID, snap.ID)
	if err != nil || restored.ID != sb.ID || restored.State != api.StateRunning {
		t.Fatalf("restore: %+v %v", restored, err)
	}
	if got := tree(sb.ID); got != before {
		t.Fatalf("restored:\n%s\nwant\n%s", got, before)
	}

	// A partial restore puts back only the named paths.
	sh(sb.ID, "echo changed > /data/a && echo changed > /data/b && rm -r /data/sub && echo new > /data/new")
	if _, err := c.RestoreSandbox(ctx, sb.ID, snap.ID, "/data/a", "/data/sub", "/data/new"); err != nil {
		t.Fatal(err)
	}
	if got := sh(sb.ID, "cat /data/a /data/b /data/sub/c; ls /data; stat -c %a /data/a"); got != "one\nchanged\nthree\na\nb\nsub\n600\n" {
		t.Fatalf("after a partial restore: %q", got)
	}

	// Listed, found, and not deletable while sandboxes run on it.
	list, err := c.ListSnapshots(ctx, sb.ID)
	if err != nil || len(list.Snapshots) != 1 || list.Snapshots[0].ID != snap.ID {
		t.Fatalf("list: %+v %v", list, err)
	}
	if _, err := api.NewClient(f.url, f.admin).GetSnapshot(ctx, snap.ID); !api.IsNotFound(err) {
		t.Fatalf("another key sees the snapshot: %v", err)
	}
	var e *api.Error
	if err := c.DeleteSnapshot(ctx, snap.ID); err == nil || !errors.As(err, &e) || e.Status != 409 {
		t.Fatalf("delete while in use: %v", err)
	}
	// Deleting the sandboxes keeps the snapshot, which can then go.
	for _, id := range []string{sb.ID, clone.ID} {
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.GetSnapshot(ctx, snap.ID); err != nil {
		t.Fatalf("the snapshot went with its sandbox: %v", err)
	}
	if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSnapshot(ctx, snap.ID); !api.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
	status, body := f.call(t, "POST", "/v1/sandboxes/"+clone.ID+"/restore", f.user, `{"snapshot":"x","paths":["/a"]}`)
	if status != 404 {
		t.Fatalf("restore from a missing snapshot: %d %s", status, body)
	}
}

// TestSnapshotRestoresWithItsOwnConfiguration: whatever a sandbox did to
// its passwd file or its image metadata, a sandbox restored from its snapshot
// runs bothy's agent, as bothy's user, with no extra privileges.
func TestSnapshotRestoresWithItsOwnConfiguration(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	if res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "echo 'evil:x:0:0::/:/bin/sh' > /etc/passwd && chmod 4755 /bin/busybox"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("tamper: %v %+v", err, res)
	}
	if _, err := c.StopSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "stopped"})
	if err != nil {
		t.Fatalf("snapshot of a stopped sandbox: %v", err)
	}
	clone, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: snap.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, clone.ID, api.ExecRequest{Shell: "id -u; grep CapEff /proc/self/status; cat /proc/1/cmdline"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec in the clone: %v %+v", err, res)
	}
	if want := "0\nCapEff:\t00000000000004eb\n/.bothy/bin/bothy-agent"; res.Stdout[:len(want)] != want {
		t.Fatalf("clone runs %q", res.Stdout)
	}
}

// TestSnapshotExportImport: an exported archive holds what the snapshot adds,
// imports (after the snapshot and its image are gone) into a snapshot that
// restores the same files, and is refused when truncated or altered.
func TestSnapshotExportImport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	const changed = 3 << 20
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "mkdir -p /data && head -c 3145728 /dev/urandom > /data/blob && echo note > /data/n && cd /data && md5sum blob n"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("write: %v %+v", err, res)
	}
	sums := res.Stdout
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "portable"})
	if err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	if _, err := c.ExportSnapshot(ctx, snap.ID, &archive); err != nil {
		t.Fatal(err)
	}
	if n := archive.Len(); n > changed*11/10+64<<10 {
		t.Fatalf("export is %d bytes for %d changed", n, changed)
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSnapshot(ctx, snap.ID); err != nil {
		t.Fatal(err)
	}

	data := archive.Bytes()
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 0xff
	for name, bad := range map[string][]byte{
		"flipped byte": flipped,
		"truncated":    data[:len(data)*2/3],
		"empty":        {},
	} {
		if _, err := c.ImportSnapshot(ctx, bytes.NewReader(bad)); err == nil {
			t.Fatalf("%s archive imported", name)
		} else if e := (*api.Error)(nil); !errors.As(err, &e) || e.Status != 400 {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if list, _ := c.ListSnapshots(ctx, ""); len(list.Snapshots) != 0 {
		t.Fatalf("refused archives left snapshots: %+v", list)
	}

	imported, err := c.ImportSnapshot(ctx, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if imported.Name != "portable" || imported.ID == snap.ID {
		t.Fatalf("imported %+v", imported)
	}
	clone, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: imported.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err = c.Exec(ctx, clone.ID, api.ExecRequest{Shell: "cd /data && md5sum blob n"})
	if err != nil || res.Stdout != sums {
		t.Fatalf("restored from the import: %q, want %q (%v)", res.Stdout, sums, err)
	}
}

// TestSnapshotDiff: a diff lists exactly the paths that changed, between two
// snapshots and between a snapshot and the sandbox as it is now.
func TestSnapshotDiff(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	sh := func(shell string) { t.Helper(); mustShell(t, c, sb.ID, shell) }
	sh("mkdir -p /data/keep /data/gone && echo 1 > /data/same && echo 1 > /data/edit && echo 1 > /data/gone/x && echo 1 > /data/rm && echo 1 > /data/keep/k")
	a, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sh("echo 22 > /data/edit && rm /data/rm && rm -r /data/gone && echo new > /data/added && chmod 700 /data/keep/k && rm /bin/ls")
	want := "added /data/added file 4; deleted /bin/ls symlink 0; deleted /data/gone dir 0; modified /data/edit file 3; deleted /data/rm file 2; modified /data/keep/k file 2"
	show := func(d api.Diff) string {
		var parts []string
		for _, e := range d.Changes {
			parts = append(parts, fmt.Sprintf("%s %s %s %d", e.Change, e.Path, e.Type, e.Size))
		}
		sort.Slice(parts, func(i, j int) bool { return strings.Fields(parts[i])[1] < strings.Fields(parts[j])[1] })
		return strings.Join(parts, "; ")
	}
	sortWant := func(s string) string {
		parts := strings.Split(s, "; ")
		sort.Slice(parts, func(i, j int) bool { return strings.Fields(parts[i])[1] < strings.Fields(parts[j])[1] })
		return strings.Join(parts, "; ")
	}
	// Against the sandbox as it is now.
	d, err := c.DiffSnapshot(ctx, a.ID, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(d); got != sortWant(want) {
		t.Fatalf("diff to the sandbox:\n got  %s\n want %s", got, sortWant(want))
	}
	// Against a second snapshot.
	b, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	d, err = c.DiffSnapshot(ctx, a.ID, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := show(d); got != sortWant(want) {
		t.Fatalf("diff to a snapshot:\n got  %s\n want %s", got, sortWant(want))
	}
	// And the other way round (a directory that comes back lists its files).
	d, err = c.DiffSnapshot(ctx, b.ID, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	reverse := "added /bin/ls symlink 0; deleted /data/added file 4; modified /data/edit file 2; added /data/gone dir 0; added /data/gone/x file 2; modified /data/keep/k file 2; added /data/rm file 2"
	if got := show(d); got != sortWant(reverse) {
		t.Fatalf("reverse diff:\n got  %s\n want %s", got, sortWant(reverse))
	}
}

// TestDeletingAParentSnapshotKeepsItsChildren: a snapshot taken from a sandbox
// restored from another still restores and exports after that other is deleted.
func TestDeletingAParentSnapshotKeepsItsChildren(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	if _, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "echo a > /a"}); err != nil {
		t.Fatal(err)
	}
	parent, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	mid, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: parent.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, mid.ID, api.ExecRequest{Shell: "echo b > /b"}); err != nil {
		t.Fatal(err)
	}
	child, err := c.CreateSnapshot(ctx, mid.ID, api.CreateSnapshotRequest{})
	if err != nil || child.Parent != parent.ID {
		t.Fatalf("child %+v %v", child, err)
	}
	for _, id := range []string{sb.ID, mid.ID} {
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.DeleteSnapshot(ctx, parent.ID); err != nil {
		t.Fatal(err)
	}
	clone, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: child.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Exec(ctx, clone.ID, api.ExecRequest{Shell: "cat /a /b"}); err != nil || res.Stdout != "a\nb\n" {
		t.Fatalf("the child after its parent went: %q %v", res.Stdout, err)
	}
	var archive bytes.Buffer
	if _, err := c.ExportSnapshot(ctx, child.ID, &archive); err != nil || archive.Len() == 0 {
		t.Fatalf("export of the child: %v", err)
	}
}
