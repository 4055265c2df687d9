package e2e

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopyInAndOut drives bothy cp, ls and cat with files and directory trees.
func TestCopyInAndOut(t *testing.T) {
	const key = "e2e-copy-key-0123456789abcdef"
	d, sb := startWithSandbox(t, key)
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := bothy(t, d.url, key, args...)
		if code != 0 {
			t.Fatalf("bothy %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}

	local := t.TempDir()
	tree := map[string][]byte{
		"a.txt":                []byte("alpha\n"),
		"dir with space/ü.txt": []byte("unicode\n"),
		"deep/er/empty":        {},
	}
	big := make([]byte, 3<<20)
	rand.Read(big)
	tree["deep/big.bin"] = big
	for name, b := range tree {
		p := filepath.Join(local, "src", name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, b, 0o640)
	}
	run("cp", filepath.Join(local, "src"), sb.ID+":/work/proj")
	if out := run("ls", sb.ID+":/work/proj"); !strings.Contains(out, "a.txt") || !strings.Contains(out, "dir with space/") {
		t.Fatalf("ls: %s", out)
	}
	if out := run("cat", sb.ID+":/work/proj/dir with space/ü.txt"); out != "unicode\n" {
		t.Fatalf("cat: %q", out)
	}
	run("cp", sb.ID+":/work/proj", filepath.Join(local, "back"))
	for name, want := range tree {
		got, err := os.ReadFile(filepath.Join(local, "back", name))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s came back as %d bytes (%v)", name, len(got), err)
		}
	}
	// One file, into an existing directory on each side.
	run("cp", filepath.Join(local, "src", "a.txt"), sb.ID+":/work")
	os.Mkdir(filepath.Join(local, "one"), 0o755)
	run("cp", sb.ID+":/work/a.txt", filepath.Join(local, "one"))
	if b, err := os.ReadFile(filepath.Join(local, "one", "a.txt")); err != nil || string(b) != "alpha\n" {
		t.Fatalf("single file: %q %v", b, err)
	}
	// cp -r: into an existing directory the source lands under its own
	// name; SRC/. copies the contents; a trailing / names a directory.
	run("cp", filepath.Join(local, "src"), sb.ID+":/work/proj")
	run("cp", filepath.Join(local, "src")+"/.", sb.ID+":/work/flat")
	run("cp", filepath.Join(local, "src"), sb.ID+":/work/new/")
	for _, p := range []string{"/work/proj/src/a.txt", "/work/flat/a.txt", "/work/new/src/deep/big.bin"} {
		if out := run("exec", sb.ID, "--", "stat", "-c", "%s", p); out == "" {
			t.Fatalf("%s missing", p)
		}
	}
	run("cp", sb.ID+":/work/proj", filepath.Join(local, "back"))
	if b, err := os.ReadFile(filepath.Join(local, "back", "proj", "a.txt")); err != nil || string(b) != "alpha\n" {
		t.Fatalf("a directory copied into an existing one: %q %v", b, err)
	}
	if _, errOut, code := bothy(t, d.url, key, "cp", filepath.Join(local, "src"), sb.ID+":/work/a.txt"); code == 0 || !strings.Contains(errOut, "cannot copy directory") {
		t.Fatalf("a directory onto a file: %d %s", code, errOut)
	}
	if _, errOut, code := bothy(t, d.url, key, "cat", sb.ID+":/work/nope"); code == 0 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("cat of a missing file: %d %s", code, errOut)
	}
}
