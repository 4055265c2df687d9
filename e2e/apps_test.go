package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
)

const counterPy = `def fetch(request, env):
    n = (env.storage.get("count") or 0) + 1
    env.storage.put("count", n)
    print("count is", n)
    return str(n)
`

const counterJS = `export default {
  async fetch(request, env) {
    const n = ((await env.storage.get("count")) || 0) + 1;
    await env.storage.put("count", n);
    return new Response(String(n));
  },
};
`

// TestAppsSurviveRestart drives runs and apps through bothy, kills bothyd
// with SIGKILL, and checks the counters go on where they stopped.
func TestAppsSurviveRestart(t *testing.T) {
	d0 := testenv.Docker(t)
	const key = "e2e-apps-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_POOL_MIN_IDLE=1"}
	d := startDaemon(t, listen, data, env...)

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if out, errOut, code := bothy(t, d.url, key, "run", "python", "-c", "print(6*7)"); out != "42\n" || code != 0 {
		t.Fatalf("bothy run python -c: %q %q %d", out, errOut, code)
	}
	if out, _, code := bothy(t, d.url, key, "run", write("exit.sh", "echo from a file; exit 3")); out != "from a file\n" || code != 3 {
		t.Fatalf("bothy run FILE.sh: %q %d", out, code)
	}
	if out, _, code := bothy(t, d.url, key, "run", write("hello.js", "console.log('hi from', typeof require)")); out != "hi from function\n" || code != 0 {
		t.Fatalf("bothy run FILE.js: %q %d", out, code)
	}
	for name, file := range map[string]string{"count-py": write("counter.py", counterPy), "count-js": write("counter.js", counterJS)} {
		if out, errOut, code := bothy(t, d.url, key, "apps", "deploy", name, file); code != 0 || !strings.Contains(out, "version 1") {
			t.Fatalf("deploy %s: %q %q", name, out, errOut)
		}
		for _, want := range []string{"1\n", "2\n"} {
			if out, errOut, code := bothy(t, d.url, key, "apps", "invoke", name); out != want || code != 0 {
				t.Fatalf("invoke %s: %q %q, want %s", name, out, errOut, want)
			}
		}
	}

	instance, _ := os.ReadFile(filepath.Join(data, "instance"))
	runners := func() map[string]bool {
		cs, err := d0.List(context.Background(), map[string]string{runtime.LabelKind: runtime.KindRunner,
			runtime.LabelInstance: strings.TrimSpace(string(instance))})
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, c := range cs {
			ids[c.ID] = true
		}
		return ids
	}
	old := runners()
	if len(old) < 2 {
		t.Fatalf("runners before the kill: %v", old)
	}
	// The request log is written in batches every 100 ms: a SIGKILL loses
	// what was not written yet (a SIGTERM loses nothing). Kill once both
	// apps' requests are written.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		py, _, _ := bothy(t, d.url, key, "apps", "logs", "count-py")
		js, _, _ := bothy(t, d.url, key, "apps", "logs", "count-js")
		if strings.Count(py, " 200 ") == 2 && strings.Count(js, " 200 ") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the request log never showed the requests: %q %q", py, js)
		}
	}
	d.kill()
	d = startDaemon(t, listen, data, env...)
	// The runners of the killed bothy are gone: state in them is not trusted.
	for id := range runners() {
		if old[id] {
			t.Errorf("runner %s of the killed bothy is still there", id[:12])
		}
	}
	for _, name := range []string{"count-py", "count-js"} {
		if out, errOut, code := bothy(t, d.url, key, "apps", "invoke", name); out != "3\n" || code != 0 {
			t.Fatalf("invoke %s after the restart: %q %q, want 3", name, out, errOut)
		}
	}
	out, _, code := bothy(t, d.url, key, "apps", "logs", "count-py")
	if code != 0 || strings.Count(out, " 200 ") != 3 || !strings.Contains(out, "| count is 3") {
		t.Fatalf("apps logs: %q", out)
	}
	out, _, code = bothy(t, d.url, key, "usage")
	if code != 0 || !strings.Contains(out, "count-js") || !strings.Contains(out, "python") {
		t.Fatalf("usage: %q", out)
	}
	out, _, code = bothy(t, d.url, key, "apps", "ls")
	if code != 0 || !strings.Contains(out, "count-py") || !strings.Contains(out, "node") {
		t.Fatalf("apps ls: %q", out)
	}
}
