package orchestrator

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/runtime/docker"
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

// TestNoMountEscapesTheDiskLimit: an image's VOLUMEs are not made (the
// engine would put them outside the sandbox's disk limit): their paths are
// plain directories of the sandbox, and a write into one stops at disk_mb.
// No other mount a sandbox gets takes writes but its own filesystem's and
// the kernel's: the files the engine would make beside the container in
// its data root (/etc/hosts, hostname, resolv.conf) are read-only.
func TestNoMountEscapesTheDiskLimit(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	if f.o.diskLimits == "" {
		t.Fatalf("this engine cannot enforce disk limits: run scripts/engine.sh for a btrfs data root")
	}
	ref := "bothy-test/volume:" + f.cfg.Instance
	if err := f.d.ImageBuild(ctx, "FROM "+images.Busybox+"\nVOLUME /data\nVOLUME [\"/var/cache\"]\n", ref, nil); err != nil {
		t.Fatal(err)
	}
	img, err := f.d.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.cleanup(t) // the sandbox first: its container holds the images
		copies, _ := f.d.ImagesLabelled(context.Background(), docker.LabelVolumeFreeOf)
		for _, c := range copies {
			if c.Labels[docker.LabelVolumeFreeOf] == img.ID {
				for _, tag := range c.Tags {
					_ = f.d.ImageRemove(context.Background(), tag)
				}
			}
		}
		_ = f.d.ImageRemove(context.Background(), ref)
	})
	sb := f.create(t, "alice", CreateOptions{Image: ref, DiskMB: minDiskMB})
	run := func(shell string) (int, string) {
		t.Helper()
		var out bytes.Buffer
		res, err := f.o.Exec(ctx, "alice", sb.ID, ExecOptions{Shell: shell}, nil, &out, &out)
		if err != nil {
			t.Fatalf("exec %q: %v", shell, err)
		}
		return res.ExitCode, out.String()
	}
	for _, dir := range []string{"/data", "/var/cache"} {
		if _, out := run("grep -c ' " + dir + " ' /proc/self/mountinfo || true"); strings.TrimSpace(out) != "0" {
			t.Fatalf("%s is a mount: %s", dir, out)
		}
		code, out := run("dd if=/dev/zero of=" + dir + "/big bs=1M count=64 2>&1; ls -l " + dir + "/big")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		fields := strings.Fields(lines[len(lines)-1])
		if len(fields) < 5 {
			t.Fatalf("ls: %q", out)
		}
		if n, _ := strconv.ParseInt(fields[4], 10, 64); n > minDiskMB<<20 || !strings.Contains(out, "quota") && !strings.Contains(out, "space") {
			t.Fatalf("64 MiB into %s of a %d MiB sandbox: exit %d, %d bytes written: %s", dir, minDiskMB, code, n, out)
		}
		run("rm -f " + dir + "/big")
	}
	// Every mount that takes writes is the sandbox's own filesystem or the
	// kernel's: memory (bounded by the sandbox's memory limit), devices.
	_, out := run("cat /proc/self/mountinfo")
	kernel := map[string]bool{"proc": true, "sysfs": true, "devpts": true, "mqueue": true, "cgroup": true, "tmpfs": true, "devtmpfs": true}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		head, tail, _ := strings.Cut(line, " - ")
		hf, tf := strings.Fields(head), strings.Fields(tail)
		if len(hf) < 6 || len(tf) < 1 {
			t.Fatalf("mountinfo line %q", line)
		}
		point, opts, fstype := hf[4], hf[5], tf[0]
		if !strings.HasPrefix(opts, "rw") || point == "/" || kernel[fstype] {
			continue
		}
		t.Errorf("a writable mount that is neither the sandbox's filesystem nor the kernel's: %s", line)
	}
	for _, file := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
		if code, out := run("echo x >> " + file); code == 0 || !strings.Contains(out, "Read-only") && !strings.Contains(out, "Permission denied") {
			t.Errorf("a write to %s: exit %d: %s", file, code, out)
		}
	}
}
