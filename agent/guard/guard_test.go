package guard

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
