package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// TestProcessOutlivesBothy: a background process started through bothy
// keeps running while bothy is killed with SIGKILL and restarted; it is
// listed again, and its output resumes from the offset a reader had reached,
// without loss or duplication.
func TestProcessOutlivesBothy(t *testing.T) {
	testenv.Docker(t)
	const key = "e2e-process-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_DEFAULT_IMAGE=bothy/busybox"}
	d := startDaemon(t, listen, data, env...)
	out, errOut, code := bothy(t, d.url, key, "create")
	if code != 0 {
		t.Fatalf("bothy create: %s", errOut)
	}
	id := strings.TrimSpace(out)
	// A counter that prints a numbered line every 50 ms.
	out, errOut, code = bothy(t, d.url, key, "start-process", "--tag", "counter", "--shell",
		`i=0; while :; do i=$((i+1)); echo line-$i; sleep 0.05; done`, id)
	if code != 0 {
		t.Fatalf("start-process: %s", errOut)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("start-process printed %q", out)
	}
	c := api.NewClient(d.url, key)
	ctx := context.Background()
	// A second bothyd on the same data directory is refused, naming the
	// first, which goes on serving (the process is checked below).
	tctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	second := exec.CommandContext(tctx, filepath.Join(binaries(t), "bothyd"), "--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--data", data, "--network", network, "--bridge", bridge)
	second.Env = append(os.Environ(), env...)
	if out, err := second.CombinedOutput(); err == nil || !strings.Contains(string(out), fmt.Sprintf("another bothyd (pid %d)", d.cmd.Process.Pid)) {
		t.Fatalf("a second bothyd on the same data directory: %v\n%s", err, out)
	}
	cancel()
	// Read what there is once line 3 is out, and note the offset reached.
	var seen strings.Builder
	var offset int64
	for deadline := time.Now().Add(time.Minute); !strings.Contains(seen.String(), "line-3\n"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no third line: %q", seen.String())
		}
		if err := c.ProcessLogs(ctx, id, pid, offset, false, func(r api.LogRecord) error {
			if r.Type == "output" {
				seen.WriteString(r.Data)
				offset = r.Offset + int64(len(r.Data))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	// Without a key, bothy says how to give one; help is not an error.
	if _, errOut, code := bothy(t, d.url, "", "ls"); code != 1 || !strings.Contains(errOut, "export BOTHY_KEY=") {
		t.Fatalf("bothy ls without a key: %d %q", code, errOut)
	}
	for _, args := range [][]string{{"--help"}, {"ls", "--help"}} {
		if _, _, code := bothy(t, d.url, key, args...); code != 0 {
			t.Fatalf("bothy %v: exit %d", args, code)
		}
	}

	// bothy exec -i streams its standard input to the command.
	if out, errOut, code := bothyIn(t, d.url, key, strings.Repeat("a line\n", 3000), "exec", "-i", id, "--", "wc", "-l"); code != 0 || strings.TrimSpace(out) != "3000" {
		t.Fatalf("bothy exec -i: %d %q %q", code, out, errOut)
	}

	d.kill()
	d = startDaemon(t, listen, data, env...)
	c = api.NewClient(d.url, key)
	if out, _, code := bothy(t, d.url, key, "ps", "--tag", "counter", id); code != 0 || !strings.Contains(out, strconv.Itoa(pid)) || !strings.Contains(out, "running") {
		t.Fatalf("after the restart, ps: %d %q", code, out)
	}
	// From the offset reached, the lines go on where they stopped.
	want := strings.Count(seen.String(), "\n") + 3
	for deadline := time.Now().Add(time.Minute); strings.Count(seen.String(), "\n") < want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the output did not go on: %q", seen.String())
		}
		if err := c.ProcessLogs(ctx, id, pid, offset, false, func(r api.LogRecord) error {
			if r.Type == "gap" {
				return fmt.Errorf("a gap after %d bytes", offset)
			}
			if r.Type == "output" {
				if r.Offset != offset {
					return fmt.Errorf("a record at %d after reading up to %d", r.Offset, offset)
				}
				seen.WriteString(r.Data)
				offset += int64(len(r.Data))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(seen.String(), "\n"), "\n")
	for i, l := range lines[:len(lines)-1] { // the last may be cut mid-line
		if l != "line-"+strconv.Itoa(i+1) {
			t.Fatalf("line %d is %q: %q", i+1, l, seen.String())
		}
	}
	// bothy logs -f, interrupted as a person does (Ctrl-C): it stops
	// quietly, with the shell's code for it.
	follow := exec.Command(filepath.Join(binaries(t), "bothy"), "logs", "-f", id, strconv.Itoa(pid))
	follow.Env = append(os.Environ(), "BOTHY_URL="+d.url, "BOTHY_KEY="+key)
	var followErr bytes.Buffer
	followOut, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	follow.Stderr = &followErr
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(followOut).ReadString('\n'); err != nil {
		t.Fatalf("bothy logs -f printed nothing: %v %s", err, followErr.String())
	}
	_ = follow.Process.Signal(os.Interrupt)
	go func() { _, _ = io.Copy(io.Discard, followOut) }()
	if err := follow.Wait(); follow.ProcessState.ExitCode() != 130 || followErr.Len() > 0 {
		t.Fatalf("bothy logs -f after Ctrl-C: %v, exit %d, %q", err, follow.ProcessState.ExitCode(), followErr.String())
	}
	if _, errOut, code := bothy(t, d.url, key, "kill", id, strconv.Itoa(pid)); code != 0 {
		t.Fatalf("bothy kill: %s", errOut)
	}
	if p, err := c.GetProcess(ctx, id, pid); err != nil || p.State != "exited" || p.Signal != "SIGKILL" {
		t.Fatalf("after bothy kill: %+v %v", p, err)
	}
	if out, _, code := bothy(t, d.url, key, "logs", id, strconv.Itoa(pid)); code != 0 || !strings.HasPrefix(out, "line-1\nline-2\n") {
		t.Fatalf("bothy logs: %d %q", code, out)
	}
}
