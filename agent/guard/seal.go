package guard

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The system calls that a container runtime's default seccomp profile
// (RuntimeDefault) refuses to a container without CAP_SYS_ADMIN and allows
// to one with it. A sandbox's agent that starts with CAP_SYS_ADMIN, to
// make its pod's files read-only (ReadOnly), drops it before any other
// process starts; but the runtime chose the profile when it made the
// container, so Seal refuses them again: above all creating namespaces,
// which would give code in the sandbox a user namespace of its own, with
// every capability in it.
var sealed = []uint32{
	unix.SYS_UNSHARE, unix.SYS_SETNS, unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT,
	unix.SYS_OPEN_TREE, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT,
	unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR, unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_FANOTIFY_INIT,
	unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_SETHOSTNAME,
	unix.SYS_SETDOMAINNAME, unix.SYS_SYSLOG, unix.SYS_LOOKUP_DCOOKIE,
}

// cloneNamespaces are clone's flags that make namespaces.
const cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
	unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// abi is how one architecture a process may call the kernel in numbers
// its system calls.
type abi struct {
	arch   uint32
	mask   uint32 // cleared from the call's number first (x32's bit)
	sealed []uint32
	clone  uint32
	clone3 uint32
}

// Seal installs, on every thread of this process and so on everything it
// starts, a seccomp filter that refuses the calls of sealed (EPERM), clone
// with a namespace flag (EPERM), and clone3, whose flags a filter cannot
// read (ENOSYS: C libraries then fall back to clone). Then it checks that
// the filter answers. A filter stays for the life of every process under
// it; none can remove it.
func Seal() error {
	prog, err := sealProgram(abis())
	if err != nil {
		return err
	}
	// no_new_privs on the calling thread lets it install a filter; the
	// kernel sets it on every thread it syncs the filter to.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("install the seccomp filter: %w", e)
	}
	if r != 0 {
		return fmt.Errorf("install the seccomp filter: thread %d could not take it", r)
	}
	// Without the filter the kernel answers a bad descriptor.
	if err := unix.Setns(-1, 0); !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("the seccomp filter does not answer: setns gave %v", err)
	}
	return nil
}

// sealProgram is the filter, in classic BPF, for the ABIs given (the first
// the native one); a call from any other is refused (ENOSYS).
func sealProgram(abis []abi) ([]unix.SockFilter, error) {
	var a asm
	const (
		offNr   = 0
		offArch = 4
		offArg0 = 16 // the low half of the first argument, on a little-endian machine
	)
	a.ld(offArch)
	for i, x := range abis {
		a.jeq(x.arch, fmt.Sprint("abi", i), "")
	}
	a.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	for i, x := range abis {
		a.label(fmt.Sprint("abi", i))
		a.ld(offNr)
		if x.mask != 0 {
			a.op(unix.BPF_ALU|unix.BPF_AND|unix.BPF_K, ^x.mask)
		}
		for _, nr := range x.sealed {
			a.jeq(nr, "eperm", "")
		}
		a.jeq(x.clone, "clone", "")
		a.jeq(x.clone3, "enosys", "")
		a.ret(unix.SECCOMP_RET_ALLOW)
	}
	a.label("clone")
	a.ld(offArg0)
	a.jset(cloneNamespaces, "eperm", "")
	a.ret(unix.SECCOMP_RET_ALLOW)
	a.label("eperm")
	a.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	a.label("enosys")
	a.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	return a.assemble()
}

// asm assembles classic BPF with named, forward jumps.
type asm struct {
	ins    []insn
	labels map[string]int
}

type insn struct {
	code   uint16
	k      uint32
	jt, jf string
}

func (a *asm) op(code uint16, k uint32) { a.ins = append(a.ins, insn{code: code, k: k}) }
func (a *asm) ld(off uint32)            { a.op(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }
func (a *asm) ret(k uint32)             { a.op(unix.BPF_RET|unix.BPF_K, k) }
func (a *asm) jeq(k uint32, jt, jf string) {
	a.ins = append(a.ins, insn{code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, k: k, jt: jt, jf: jf})
}
func (a *asm) jset(k uint32, jt, jf string) {
	a.ins = append(a.ins, insn{code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, k: k, jt: jt, jf: jf})
}

func (a *asm) label(name string) {
	if a.labels == nil {
		a.labels = map[string]int{}
	}
	a.labels[name] = len(a.ins)
}

func (a *asm) assemble() ([]unix.SockFilter, error) {
	out := make([]unix.SockFilter, len(a.ins))
	for i, in := range a.ins {
		f := unix.SockFilter{Code: in.code, K: in.k}
		for _, j := range []struct {
			to  string
			off *uint8
		}{{in.jt, &f.Jt}, {in.jf, &f.Jf}} {
			if j.to == "" {
				continue
			}
			at, ok := a.labels[j.to]
			d := at - i - 1
			if !ok || d < 0 || d > 255 {
				return nil, fmt.Errorf("seccomp filter: jump %d to %q cannot be made", i, j.to)
			}
			*j.off = uint8(d)
		}
		out[i] = f
	}
	return out, nil
}
