package guard

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// child runs this test again in a child process (through wrap, when given),
// which does what the test says when BOTHY_GUARD_CHILD names it, and
// answers its output.
func child(t *testing.T, wrap ...string) (string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(wrap, self, "-test.run=^"+t.Name()+"$", "-test.v")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "BOTHY_GUARD_CHILD="+t.Name())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func inChild(t *testing.T) bool { return os.Getenv("BOTHY_GUARD_CHILD") == t.Name() }

// TestSeal: a process under the filter, and what it starts, cannot make a
// namespace (a user namespace above all) by unshare, setns or clone, nor
// mount; clone3 is not there; starting programs works as before.
func TestSeal(t *testing.T) {
	if inChild(t) {
		if err := Seal(); err != nil {
			t.Fatal(err)
		}
		if err := unix.Unshare(unix.CLONE_NEWUSER); !errors.Is(err, unix.EPERM) {
			t.Fatalf("unshare a user namespace: %v", err)
		}
		if err := unix.Mount("none", t.TempDir(), "tmpfs", 0, ""); !errors.Is(err, unix.EPERM) {
			t.Fatalf("mount: %v", err)
		}
		if _, _, e := unix.RawSyscall(unix.SYS_CLONE3, 0, 0, 0); e != unix.ENOSYS {
			t.Fatalf("clone3: %v", e)
		}
		if out, err := exec.Command("sh", "-c", "echo started").CombinedOutput(); err != nil || string(out) != "started\n" {
			t.Fatalf("start a program: %v %q", err, out)
		}
		if _, err := exec.LookPath("unshare"); err == nil {
			if out, err := exec.Command("unshare", "--user", "--map-root-user", "true").CombinedOutput(); err == nil {
				t.Fatalf("a child made a user namespace: %s", out)
			}
		}
		return
	}
	prog, err := sealProgram(abis())
	if err != nil || len(prog) > 255 {
		t.Fatalf("the filter: %d instructions, %v", len(prog), err)
	}
	if out, err := child(t); err != nil || !strings.Contains(out, "PASS") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestReadOnly: a file bound over another is made read-only, root's writes
// included; a path that is no mount point, or does not exist, is left.
func TestReadOnly(t *testing.T) {
	if inChild(t) {
		dir := t.TempDir()
		src, dst, plain := filepath.Join(dir, "src"), filepath.Join(dir, "dst"), filepath.Join(dir, "plain")
		for _, f := range []string{src, dst, plain} {
			if err := os.WriteFile(f, []byte("x\n"), 0o666); err != nil {
				t.Fatal(err)
			}
		}
		if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(dst, 0)
		link := filepath.Join(dir, "link")
		if err := os.Symlink(dst, link); err != nil {
			t.Fatal(err)
		}
		if err := ReadOnly([]string{link, plain, filepath.Join(dir, "none")}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, []byte("more"), 0o666); !errors.Is(err, unix.EROFS) {
			t.Fatalf("write the bound file: %v", err)
		}
		if err := os.WriteFile(plain, []byte("more"), 0o666); err != nil {
			t.Fatalf("write a plain file: %v", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make a mount namespace")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare is not installed")
	}
	if out, err := child(t, "unshare", "--mount", "--propagation", "private"); err != nil || !strings.Contains(out, "PASS") {
		t.Fatalf("%v\n%s", err, out)
	}
}

// TestSealProgramAnswers runs the filter in a BPF interpreter over every ABI
// it knows: the sealed calls and clone with a namespace flag are refused,
// clone3 and an unknown architecture are not implemented, the rest passes.
// (The interpreter loads words big-endian where the kernel loads them
// natively: each word is written as the filter's loads see it.)
func TestSealProgramAnswers(t *testing.T) {
	prog, err := sealProgram(abis())
	if err != nil {
		t.Fatal(err)
	}
	ins := make([]bpf.Instruction, len(prog))
	for i, f := range prog {
		ins[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatal(err)
	}
	const (
		allow  = unix.SECCOMP_RET_ALLOW
		eperm  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		enosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	answer := func(arch, nr, arg0 uint32) uint32 {
		data := make([]byte, 64)
		binary.BigEndian.PutUint32(data[0:], nr)
		binary.BigEndian.PutUint32(data[4:], arch)
		binary.BigEndian.PutUint32(data[16:], arg0)
		got, err := vm.Run(data)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(got)
	}
	for _, x := range abis() {
		for _, nr := range x.sealed {
			if got := answer(x.arch, nr, 0); got != eperm {
				t.Errorf("arch %#x call %d: %#x, want EPERM", x.arch, nr, got)
			}
		}
		if got := answer(x.arch, x.clone, unix.CLONE_NEWUSER); got != eperm {
			t.Errorf("arch %#x: clone of a user namespace: %#x", x.arch, got)
		}
		if got := answer(x.arch, x.clone, unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND); got != allow {
			t.Errorf("arch %#x: clone of a thread: %#x", x.arch, got)
		}
		if got := answer(x.arch, x.clone3, 0); got != enosys {
			t.Errorf("arch %#x: clone3: %#x", x.arch, got)
		}
		if got := answer(x.arch, 1, 0); got != allow {
			t.Errorf("arch %#x: call 1: %#x", x.arch, got)
		}
		if x.mask != 0 {
			if got := answer(x.arch, x.mask|unix.SYS_UNSHARE, 0); got != eperm {
				t.Errorf("arch %#x: unshare with the x32 bit: %#x", x.arch, got)
			}
		}
	}
	if got := answer(0x12345678, unix.SYS_GETPID, 0); got != enosys {
		t.Errorf("an unknown architecture: %#x", got)
	}
}
