package orchestrator

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// TestDiskLimit: a sandbox's disk_mb holds against bytes and against files:
// the writer gets "Disk quota exceeded" (or "No space left"), and another
// sandbox writes on. Where the engine cannot enforce a size, disk_mb is
// refused instead.
func TestDiskLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	if f.o.diskLimits == "" {
		_, _, err := f.o.Create(ctx, "alice", CreateOptions{DiskMB: 512})
		if !cerrdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "disk_mb") {
			t.Fatalf("disk_mb on an engine that cannot enforce it: %v", err)
		}
		t.Fatalf("this engine (%+v) cannot enforce disk limits: run scripts/engine.sh for a btrfs data root", f.o.cfg.Limits)
	}
	run := func(id, shell string) (int, string) {
		t.Helper()
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		res, err := f.o.Exec(ctx, "alice", id, ExecOptions{Shell: shell}, nil, &out, &out)
		if err != nil {
			t.Fatalf("exec %q: %v", shell, err)
		}
		return res.ExitCode, out.String()
	}
	full := func(out string) bool {
		return strings.Contains(out, "Disk quota exceeded") || strings.Contains(out, "No space left")
	}
	// Bytes: 600 MiB into 512 MiB; files: a flood of empty files into the
	// smallest disk (16 MiB), with long names, so that the flood, and the
	// engine's removal of it, stay short.
	half := f.create(t, "alice", CreateOptions{DiskMB: 512})
	small := f.create(t, "alice", CreateOptions{DiskMB: minDiskMB})
	other := f.create(t, "alice", CreateOptions{})
	if other.Spec.DiskMB != f.o.cfg.Limits.DefaultDiskMB || small.Spec.DiskMB != minDiskMB || half.Spec.DiskMB != 512 {
		t.Fatalf("disk_mb: %d, %d and %d", half.Spec.DiskMB, small.Spec.DiskMB, other.Spec.DiskMB)
	}
	code, out := run(half.ID, "dd if=/dev/zero of=/root/big bs=1M count=600 2>&1; ls -l /root/big")
	if !full(out) {
		t.Fatalf("600 MiB into a 512 MiB sandbox: exit %d: %s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	fields := strings.Fields(lines[len(lines)-1])
	if len(fields) < 5 {
		t.Fatalf("ls: %q", out)
	}
	if n, _ := strconv.ParseInt(fields[4], 10, 64); n > 512<<20 || n < 448<<20 {
		t.Fatalf("the file is %d bytes", n)
	}
	// The full sandbox is flagged; the other is not.
	flagged := func(id string) bool {
		t.Helper()
		sb, err := f.o.Get(ctx, "alice", id)
		if err != nil {
			t.Fatal(err)
		}
		return f.o.DiskFull(ctx, sb)
	}
	if !flagged(half.ID) || flagged(other.ID) {
		t.Fatalf("disk full: the full sandbox %v, the other %v", flagged(half.ID), flagged(other.ID))
	}
	run(half.ID, "rm -f /root/big")
	// The space comes back when the filesystem commits the removal.
	waitFor(t, time.Minute, func() bool { return !flagged(half.ID) })
	// Files: empty files until the metadata fills the limit.
	code, out = run(small.ID, `mkdir -p /root/many && cd /root/many && i=0
		p=$(printf '%0200d' 0)
		while [ $i -lt 500000 ] && : > "$p$i" 2>/dev/null; do i=$((i+1)); done
		touch one-more 2>&1; echo files=$i`)
	if !full(out) || strings.Contains(out, "files=500000") {
		t.Fatalf("a flood of empty files was not stopped: exit %d: %s", code, out)
	}
	t.Logf("the %d MiB sandbox stopped at: %s", minDiskMB, strings.TrimSpace(out))
	// The other sandbox is unaffected.
	if code, out := run(other.ID, "dd if=/dev/zero of=/root/f bs=1M count=20 2>&1 && echo ok"); code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("the other sandbox: %d %s", code, out)
	}
	// Out of range.
	for _, mb := range []int64{1, f.o.cfg.Limits.MaxDiskMB + 1} {
		if _, _, err := f.o.Create(ctx, "alice", CreateOptions{DiskMB: mb}); !cerrdefs.IsInvalidArgument(err) {
			t.Fatalf("disk_mb %d: %v", mb, err)
		}
	}
}
