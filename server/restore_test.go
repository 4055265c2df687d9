package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/images"
)

// TestRestoreByPathIsAllOrNothing restores /etc by path (80-odd entries,
// and the files the engine's place mounted in it: /etc/hosts, hostname,
// resolv.conf), as docs/snapshots.md shows: it comes back whole, the mounts
// stay as they are, what was added since goes, what was removed comes back.
// A restore that cannot be done (a mount point, or a list with one) is
// refused before anything changes, and /etc is as it was.
func TestRestoreByPathIsAllOrNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := api.NewClient(f.url, f.user)
	ctx := context.Background()
	sb := mustCreateWith(t, c, api.CreateSandboxRequest{Image: images.Base})
	list := "ls -A /etc | sort | tr '\\n' ' '"
	before := mustShell(t, c, sb.ID, list)
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "etc"})
	if err != nil {
		t.Fatal(err)
	}
	mustShell(t, c, sb.ID, "echo added > /etc/added && rm /etc/issue && echo changed > /etc/motd && mkdir -p /etc/newdir/sub")
	changed := mustShell(t, c, sb.ID, list)

	// Refused, and nothing changes: a mount point; a list of paths of
	// which one is a mount point (the first is staged, then dropped).
	for _, paths := range [][]string{{"/etc/hosts"}, {"/etc", "/proc"}, {"/etc", "/etc/resolv.conf"}} {
		_, err := c.RestoreSandbox(ctx, sb.ID, snap.ID, paths...)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 409 {
			t.Fatalf("restore of %v: %v, want 409", paths, err)
		}
		if now := mustShell(t, c, sb.ID, list); now != changed {
			t.Fatalf("a refused restore of %v changed /etc:\n%s\nnow:\n%s", paths, changed, now)
		}
		if strings.Contains(mustShell(t, c, sb.ID, "ls -a /etc"), ".bothy-restore-") {
			t.Fatalf("a refused restore of %v left its staging directory", paths)
		}
	}

	if _, err := c.RestoreSandbox(ctx, sb.ID, snap.ID, "/etc"); err != nil {
		t.Fatalf("restore /etc: %v", err)
	}
	if after := mustShell(t, c, sb.ID, list); after != before {
		t.Fatalf("/etc after the restore:\n%s\nwant:\n%s", after, before)
	}
	mustShell(t, c, sb.ID, "test -s /etc/passwd && test -f /etc/issue && ! grep -q changed /etc/motd && test ! -e /etc/added")
	// The mounts are where they were, with what bothy put there.
	if got := mustShell(t, c, sb.ID, "cat /etc/hostname"); strings.TrimSpace(got) != sb.ID {
		t.Fatalf("/etc/hostname after the restore: %q", got)
	}
	if got := mustShell(t, c, sb.ID, "grep -c ' /etc/' /proc/self/mountinfo"); strings.TrimSpace(got) != "3" {
		t.Fatalf("mounts in /etc after the restore: %s", got)
	}
	mustShell(t, c, sb.ID, "getent hosts localhost >/dev/null && id root >/dev/null")

	// A path the snapshot does not have goes; one it has comes back; one
	// without mounts goes back in one swap.
	mustShell(t, c, sb.ID, "mkdir -p /srv/new && echo x > /srv/new/f")
	if _, err := c.RestoreSandbox(ctx, sb.ID, snap.ID, "/srv/new", "/etc/motd"); err != nil {
		t.Fatalf("restore /srv/new and /etc/motd: %v", err)
	}
	mustShell(t, c, sb.ID, "test ! -e /srv/new && ! grep -q changed /etc/motd")
}
