package guard

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropped are the capabilities a sandbox's agent needs only to contain its
// pod: CAP_NET_ADMIN to install the rules, CAP_SYS_ADMIN to make the
// pod's files read-only (ReadOnly), CAP_SETPCAP to drop the rest.
var dropped = []uintptr{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN, unix.CAP_SETPCAP}

// DropCaps removes CAP_NET_ADMIN, CAP_SYS_ADMIN and CAP_SETPCAP from the bounding set and
// from the effective, permitted, inheritable and ambient sets of every
// thread of this process, so that neither it nor anything it starts, root
// or not, holds them again; then it checks that none is left. It needs
// CAP_SETPCAP, and a process built without cgo (the kernel changes one
// thread at a time: every thread makes the calls).
func DropCaps() error {
	// The bounding set first, which takes CAP_SETPCAP; SETPCAP last.
	for _, c := range dropped {
		if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0); e != 0 {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); e != 0 {
		return fmt.Errorf("clear the ambient capabilities: %w", e)
	}
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := &[2]unix.CapUserData{}
	if err := unix.Capget(hdr, &data[0]); err != nil {
		return fmt.Errorf("read the capabilities: %w", err)
	}
	for _, c := range dropped {
		mask := ^uint32(1 << (c % 32))
		d := &data[c/32]
		d.Effective &= mask
		d.Permitted &= mask
		d.Inheritable &= mask
	}
	// pid 0 in the header: each thread sets its own.
	hdr.Pid = 0
	_, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	if e != 0 {
		return fmt.Errorf("set the capabilities: %w", e)
	}
	return checkDropped()
}

// checkDropped reads every thread's capability sets from /proc and fails if
// any still holds a dropped capability.
func checkDropped() error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/status")
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			// A thread that ended since the listing.
			continue
		} else if err != nil {
			return err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			name, v, ok := strings.Cut(line, ":\t")
			if !ok || !strings.HasPrefix(name, "Cap") {
				continue
			}
			set, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return fmt.Errorf("thread %s: %s: %w", t.Name(), name, err)
			}
			for _, c := range dropped {
				if set&(1<<c) != 0 {
					return fmt.Errorf("thread %s still holds capability %d in %s", t.Name(), c, name)
				}
			}
		}
	}
	return nil
}

// HoldsAdmin says whether CAP_NET_ADMIN or CAP_SYS_ADMIN is in this
// thread's bounding set.
func HoldsAdmin() bool {
	for _, c := range []int{unix.CAP_NET_ADMIN, unix.CAP_SYS_ADMIN} {
		if in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && in == 1 {
			return true
		}
	}
	return false
}
