package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// captureChanges changes, as root, what an agent's capture must keep: new
// files and directories with their modes (setuid, sticky), owners, times
// and extended attributes; hard links, symlinks (dangling too), a FIFO, a
// name with spaces; and, of the image, a changed file, a file whose mode
// alone changed, a deleted file, a deleted tree, a tree replaced by a new
// one, a file replaced by a symlink, a tree moved away, one of its files
// deleted, and a symlink to it in its place (no whiteout may go below it).
const captureChanges = `set -e
mkdir -p /srv/cap/dir/sub /srv/cap/sticky
echo one > /srv/cap/dir/sub/a
chown 1234:5678 /srv/cap/dir/sub/a
chmod 4755 /srv/cap/dir/sub/a
touch -d '1999-12-31 23:59:59.5' /srv/cap/dir/sub/a
chmod 1777 /srv/cap/sticky
: > /srv/cap/empty
chmod 0640 /srv/cap/empty
head -c 8388608 /dev/urandom > /srv/cap/big
ln /srv/cap/big /srv/cap/big-link1
ln /srv/cap/big /srv/cap/dir/big-link2
ln -s ../big /srv/cap/dir/rel-link
touch -h -d '2001-02-03 04:05:06.123456789' /srv/cap/dir/rel-link
ln -s /nowhere /srv/cap/dangling
mkfifo /srv/cap/fifo
echo spaced > '/srv/cap/a file'
python3 -c 'import os; os.setxattr("/srv/cap/big", "user.color", b"blue"); os.setxattr("/srv/cap/dir", "user.kind", b"dir\x00bin")'
echo changed >> /etc/debian_version
chmod 0600 /etc/shells
rm /etc/issue
rm -r /usr/share/common-licenses
rm -r /usr/share/man && mkdir /usr/share/man && echo fresh > /usr/share/man/only
rm /usr/bin/xargs && ln -s /bin/true /usr/bin/xargs
mv /usr/share/zoneinfo /srv/zi
rm "/srv/zi/$(cd /srv/zi && find . -type f | sort | head -n 1)"
ln -s /srv/zi /usr/share/zoneinfo
`

// fsListing prints every path of the container's own filesystem (not
// /proc, /sys, /dev, bothy's mount or the engine's files, which every
// container gets anew, nor the times of / and /etc, where the engine makes
// them) with its type, mode, owner, size, modification time
// in nanoseconds, link target, content hash, hard link group and extended
// attributes, sorted.
const fsListing = `
import hashlib, os, stat, sys
skip = {"/", "/proc", "/sys", "/dev", "/.bothy", "/.dockerenv", "/etc", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab"}
root_dev = os.lstat("/").st_dev
first = {}
out = []
def visit(p):
    st = os.lstat(p)
    if st.st_dev != root_dev:
        return
    if p not in skip:
        kind, extra = stat.S_IFMT(st.st_mode), ""
        if stat.S_ISLNK(st.st_mode):
            extra = "-> " + os.readlink(p)
        elif stat.S_ISREG(st.st_mode):
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                extra = "link " + first.setdefault(key, p) + " "
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            extra += h.hexdigest()
        try:
            xattrs = sorted((n, os.getxattr(p, n, follow_symlinks=False).hex()) for n in os.listxattr(p, follow_symlinks=False))
        except OSError:
            xattrs = []
        out.append("%r %o %o %d:%d %d %d %s %s" % (p, kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
            st.st_size if stat.S_ISREG(st.st_mode) else 0, st.st_mtime_ns, extra, xattrs))
    if stat.S_ISDIR(st.st_mode) and (p == "/" or p not in skip or p == "/etc"):
        for name in sorted(os.listdir(p)):
            visit(os.path.join(p, name))
visit("/")
sys.stdout.write("\n".join(sorted(out)) + "\n")
`

// TestAgentCapturedSnapshots: with --checkpoint agent, a checkpoint of a
// running sandbox is streamed by its agent as a layer, and the sandboxes
// made from it (created from the snapshot, restored in place, forked, and
// created from the snapshot exported and imported again) hold the source's
// filesystem bit for bit; a diff against the live sandbox sees a change
// made after it.
func TestAgentCapturedSnapshots(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-capture-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key, "BOTHY_CHECKPOINT=agent")
	ctx := context.Background()
	c := api.NewClient(d.url, key)
	src, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if res, err := c.Exec(ctx, src.ID, api.ExecRequest{Shell: captureChanges, User: "root"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("changes: %v %+v", err, res)
	}
	listing := func(id string) string {
		t.Helper()
		res, err := c.Exec(ctx, id, api.ExecRequest{Cmd: []string{"python3", "-c", fsListing}, User: "root", MaxOutputBytes: 16 << 20})
		if err != nil || res.ExitCode != 0 || res.Truncated {
			t.Fatalf("listing of %s: %v %d %q", id, err, res.ExitCode, res.Stderr)
		}
		return res.Stdout
	}
	want := listing(src.ID)
	for _, p := range []string{"'/srv/cap/dir/sub/a' 100000 4755 1234:5678", "'/srv/cap/fifo' 10000", "user.color", "'/usr/share/man/only'"} {
		if !strings.Contains(want, p) {
			t.Fatalf("the source's listing lacks %q: the changes did not all happen", p)
		}
	}
	same := func(what, id string) {
		t.Helper()
		if got := listing(id); got != want {
			t.Errorf("%s differs from the source:\n%s", what, lineDiff(want, got))
		}
	}
	snap, err := c.CreateSnapshot(ctx, src.ID, api.CreateSnapshotRequest{Name: "captured"})
	if err != nil {
		t.Fatal(err)
	}
	// bothy's log reaches the test through a pipe, a little after the
	// answer.
	for deadline := time.Now().Add(time.Minute); !strings.Contains(d.log(), "how=agent"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the checkpoint was not the agent's:\n%s", d.log())
		}
	}
	made, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: snap.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	same("a sandbox created from the snapshot", made.ID)

	// A change after the checkpoint: the diff against the live sandbox
	// sees it, and a restore in place undoes it.
	if res, err := c.Exec(ctx, src.ID, api.ExecRequest{Shell: "echo later > /srv/cap/later && rm /srv/cap/empty", User: "root"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("later change: %v %+v", err, res)
	}
	diff, err := c.DiffSnapshot(ctx, snap.ID, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, ch := range diff.Changes {
		kinds[ch.Path] = ch.Change
	}
	delete(kinds, "/srv/cap") // its entries changed
	if kinds["/srv/cap/later"] != "added" || kinds["/srv/cap/empty"] != "deleted" || len(kinds) != 2 {
		t.Errorf("diff against the live sandbox: %+v", diff.Changes)
	}
	if _, err := c.RestoreSandbox(ctx, src.ID, snap.ID); err != nil {
		t.Fatal(err)
	}
	same("the source restored in place", src.ID)

	fork, err := c.Fork(ctx, src.ID, api.ForkRequest{Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	same("a fork", fork.Sandboxes[0].ID)

	fromImport := fromExport(t, c, snap.ID)
	same("a sandbox from the snapshot exported and imported", fromImport.ID)
}

// lineDiff shows the lines only one of two listings has.
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
