package docker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Every container runs as the same remapped host user, in a user namespace
// that root on the host made, so the kernel counts some of what each takes
// against counters that all of them share, and that root on the host shares
// too: inotify instances and watches (charged to the namespace's owner,
// root), epoll watches (charged to the remapped user), terminals (one
// global count), queued signals and POSIX message queues (charged to the
// namespace's owner, root). One container could take all of a counter and
// leave the others, bothy and the host without. So:
//   - the host's limits on those counters are raised past what the host's
//     memory could ever hold (RaiseHostLimits): each instance, watch and
//     queued signal is charged to the memory cgroup of the container that
//     took it, so what bounds a container is its own memory limit, and the
//     shared counters cannot run out;
//   - each container gets shares of its own on top (Shares): per user in
//     its namespace for inotify (set from the host after it starts; the
//     container has no CAP_SYS_RESOURCE to raise them) and queued signals
//     (an rlimit), a cap on its terminals (its devpts instance's max), and
//     no POSIX message queues at all (RLIMIT_MSGQUEUE 0), whose bytes are
//     counted against root's own limit on the host.
// Kernel keys, user namespaces and fanotify are refused to containers by
// the engine's default seccomp profile.

// Shares bound what one container may take of the kernel's shared limits.
type Shares struct {
	// InotifyInstances and InotifyWatches bound each user inside the
	// container.
	InotifyInstances, InotifyWatches int
	// Ptys bounds the container's terminals, all users together.
	Ptys int
	// SigPending bounds each user's queued signals inside the container.
	SigPending int64
}

// DefaultShares are generous for one sandbox (a dev server's file watcher
// takes tens of thousands of watches; a terminal multiplexer a handful of
// terminals) and small beside the host.
func DefaultShares() Shares {
	return Shares{InotifyInstances: 128, InotifyWatches: 65536, Ptys: 256, SigPending: 1024}
}

// hostLimits are the host's shared counters and the least each must allow:
// far past what the host's memory could hold, so that none runs out.
var hostLimits = []struct {
	path string
	min  int64
}{
	{"/proc/sys/fs/inotify/max_user_instances", 1<<31 - 1},
	{"/proc/sys/fs/inotify/max_user_watches", 1<<31 - 1},
	{"/proc/sys/fs/epoll/max_user_watches", 1 << 40},
	{"/proc/sys/fs/aio-max-nr", 1 << 26},
	{"/proc/sys/kernel/pty/max", 1 << 18},
}

// RaiseHostLimits raises the host's shared counters that containers take
// from (see Shares) to their floors, keeping any that is higher already. It
// returns the ones it changed, as "path=value".
func RaiseHostLimits() ([]string, error) {
	var changed []string
	var errs []error
	for _, l := range hostLimits {
		b, err := os.ReadFile(l.path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		cur, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		if err == nil && cur >= l.min {
			continue
		}
		v := strconv.FormatInt(l.min, 10)
		if err := os.WriteFile(l.path, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("raise %s to %s (where /proc/sys is read-only, set it on the host: sysctl -w %s=%s): %w",
				l.path, v, strings.ReplaceAll(strings.TrimPrefix(l.path, "/proc/sys/"), "/", "."), v, err))
			continue
		}
		changed = append(changed, filepath.Base(l.path)+"="+v)
	}
	return changed, errors.Join(errs...)
}

// applyShares gives the started container whose init is pid its shares:
// its user namespace's inotify limits (set from inside that namespace,
// where the host's root may; nsenter runs single-threaded, as setns into a
// user namespace needs) and its devpts instance's most terminals.
func applyShares(ctx context.Context, pid int, s Shares) error {
	p := strconv.Itoa(pid)
	script := fmt.Sprintf("echo %d > /proc/sys/user/max_inotify_instances && echo %d > /proc/sys/user/max_inotify_watches",
		s.InotifyInstances, s.InotifyWatches)
	if out, err := exec.CommandContext(ctx, "nsenter", "--user", "--target", p, "--", "sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("inotify shares of process %d: %w: %s", pid, err, strings.TrimSpace(string(out)))
	}
	if s.Ptys > 0 {
		if err := capTerminals(pid, s.Ptys); err != nil {
			return fmt.Errorf("terminal share of process %d: %w", pid, err)
		}
	}
	return nil
}

// capTerminals reconfigures the devpts instance the container of pid
// mounted at /dev/pts to allow at most max terminals. A reconfiguration
// sets every option, so the engine's own are given again; its gid (the
// container's tty group, 5) is named as the host sees it.
func capTerminals(pid, max int) error {
	tty, err := hostID(fmt.Sprintf("/proc/%d/gid_map", pid), 5)
	if err != nil {
		return err
	}
	fd, err := unix.Fspick(unix.AT_FDCWD, fmt.Sprintf("/proc/%d/root/dev/pts", pid), unix.FSPICK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fspick /dev/pts: %w", err)
	}
	defer unix.Close(fd)
	for _, kv := range [][2]string{{"gid", strconv.Itoa(tty)}, {"mode", "620"}, {"ptmxmode", "666"}, {"max", strconv.Itoa(max)}} {
		if err := unix.FsconfigSetString(fd, kv[0], kv[1]); err != nil {
			return fmt.Errorf("devpts %s=%s: %w", kv[0], kv[1], err)
		}
	}
	if err := unix.FsconfigReconfigure(fd); err != nil {
		return fmt.Errorf("reconfigure devpts: %w", err)
	}
	return nil
}

// hostID maps id through a uid_map or gid_map file ("inside outside count"
// lines) to the host's.
func hostID(mapFile string, id int) (int, error) {
	f, err := os.Open(mapFile)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var in, out, n int
		if _, err := fmt.Sscan(sc.Text(), &in, &out, &n); err != nil {
			continue
		}
		if id >= in && id < in+n {
			return out + id - in, nil
		}
	}
	return 0, fmt.Errorf("%s does not map %d", mapFile, id)
}
