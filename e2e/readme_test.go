package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/internal/testenv"
)

// readmeCLIBlock returns the units (a line, or a here-document with its body)
// of the README's first sh block under "## Using it".
func readmeCLIBlock(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## Using it\n")
	if !ok {
		t.Fatal("README has no '## Using it' section")
	}
	_, rest, ok = strings.Cut(rest, "```sh\n")
	if !ok {
		t.Fatal("no sh block under '## Using it'")
	}
	block, _, _ := strings.Cut(rest, "```")
	var units []string
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		if _, delim, ok := strings.Cut(line, "<<'"); ok {
			delim, _, _ = strings.Cut(delim, "'")
			for sc.Scan() {
				line += "\n" + sc.Text()
				if sc.Text() == delim {
					break
				}
			}
		}
		units = append(units, line)
	}
	return units
}

// placeholder marks a line with something the reader fills in (their key, a
// session ID), which cannot run as written.
var placeholder = regexp.MustCompile(`bothy_\.\.\.|\bSESSION\b`)

// expected reads the answer a line's comment promises: "# 42", or "...: 42".
func expected(line string) string {
	_, comment, ok := strings.Cut(line, "  # ")
	if !ok {
		return ""
	}
	comment = strings.TrimSpace(comment)
	if !strings.Contains(comment, " ") {
		return comment
	}
	if _, after, ok := strings.Cut(comment, ": "); ok && !strings.Contains(after, " ") {
		return after
	}
	return ""
}

// TestReadmeCLILines runs every line of the README's CLI walkthrough, as
// written, through the built bothy against a real bothy, in order: each must
// succeed, and print what its comment promises.
func TestReadmeCLILines(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-readme-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data, "BOTHY_ADMIN_KEY="+key)

	// The reader's working directory: bin/bothy, a project to copy in, a
	// script to run.
	work := t.TempDir()
	if err := os.MkdirAll(filepath.Join(work, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(binaries(t), "bothy"), filepath.Join(work, "bin", "bothy")); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"project/README.md":      "# project\n",
		"project/out/result.txt": "done\n",
		"script.js":              "console.log('from script.js')\n",
	} {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	var script strings.Builder
	script.WriteString("set -u\n")
	ran := 0
	for i, unit := range readmeCLIBlock(t) {
		if placeholder.MatchString(unit) {
			t.Logf("not run (a placeholder): %s", unit)
			continue
		}
		ran++
		// Each unit runs in the script's own shell (so that ID=$(...)
		// lasts), its output kept for the checks.
		fmt.Fprintf(&script, "{ %s\n} </dev/null >out.%d 2>err.%d; echo $? >rc.%d\n", unit, i, i, i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "BOTHY_URL="+d.url, "BOTHY_KEY="+key)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the walkthrough did not finish: %v\n%s", err, out)
	}
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(work, name))
		return string(b)
	}
	for i, unit := range readmeCLIBlock(t) {
		if placeholder.MatchString(unit) {
			continue
		}
		rc, stdout, stderr := strings.TrimSpace(read(fmt.Sprintf("rc.%d", i))), read(fmt.Sprintf("out.%d", i)), read(fmt.Sprintf("err.%d", i))
		if rc != "0" {
			t.Errorf("README line failed (exit %s): %s\nstdout: %s\nstderr: %s", rc, unit, stdout, stderr)
			continue
		}
		if want := expected(unit); want != "" {
			lines := strings.Split(strings.TrimSpace(stdout), "\n")
			if got := lines[len(lines)-1]; got != want {
				t.Errorf("README line printed %q, its comment says %q: %s", got, want, unit)
			}
		}
	}
	if ran < 25 {
		t.Errorf("ran only %d README lines", ran)
	}

	// What the lines did: the snapshot kept its --name (given after the
	// sandbox ID), the copy followed cp -r, the app counted.
	if b, err := os.ReadFile(filepath.Join(work, "out", "result.txt")); err != nil || string(b) != "done\n" {
		t.Errorf("bothy cp back: %q %v", b, err)
	}
	out, _, code := bothy(t, d.url, key, "snapshot", "ls", "--json")
	var snaps []struct{ Name string }
	if code != 0 || json.Unmarshal([]byte(out), &snaps) != nil || len(snaps) != 1 || snaps[0].Name != "before-upgrade" {
		t.Errorf("snapshots after the walkthrough: %s", out)
	}
}
