package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/agent/wire"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/isolate"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/supervisor"
)

type dynFixture struct {
	*base
	url      string
	a, b     *api.Client
	iso      *isolate.Service
	instance string
}

// newDynFixture serves the real router over a real isolate service (runner
// pools on the real engine), a real ledger and real limits. Client a has the
// admin key, b another key.
func newDynFixture(t *testing.T, limits supervisor.LimitsConfig, appIdle time.Duration) *dynFixture {
	t.Helper()
	ctx := context.Background()
	b := newBase(t)
	instance := "dyntest-" + filepath.Base(b.data)
	ledger, err := supervisor.NewLedger(ctx, b.sq, b.log)
	if err != nil {
		t.Fatal(err)
	}
	iso, err := isolate.New(ctx, isolate.Config{
		Instance: instance, DataDir: b.data, AgentHost: testenv.AgentBinary(t),
		Images: map[string]string{
			wire.RuntimePython: images.RunnerPython, wire.RuntimeNode: images.RunnerNode, wire.RuntimeBash: images.RunnerBash,
		},
		MinIdle: map[string]int{wire.RuntimePython: 1, wire.RuntimeNode: 1, wire.RuntimeBash: 1},
		AppIdle: appIdle, Limits: supervisor.NewLimits(limits), Ledger: ledger,
	}, b.d, b.images, b.sq, b.log)
	if err != nil {
		t.Fatal(err)
	}
	iso.Start()
	t.Cleanup(iso.Close)
	deadline := time.Now().Add(5 * time.Minute) // the runner images may need building
	for !iso.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("the pools did not warm up: %+v", iso.Pools())
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv := New(Config{}, Deps{Keys: b.keys, Isolate: iso, Ledger: ledger, DB: b.sq, Log: b.log})
	url := b.serve(t, srv, instance, ledger.Close)
	return &dynFixture{base: b, url: url, a: api.NewClient(url, b.admin), b: api.NewClient(url, b.user),
		iso: iso, instance: instance}
}

func run(t *testing.T, c *api.Client, req api.RunRequest) api.RunResult {
	t.Helper()
	res, err := c.Run(context.Background(), req)
	if err != nil {
		t.Fatalf("run %s %q: %v", req.Runtime, req.Code, err)
	}
	return res
}

// TestRuns covers POST /v1/run on the real engine: the three runtimes, files,
// isolation between keys, the limits, and bad input.
func TestRuns(t *testing.T) {
	f := newDynFixture(t, supervisor.LimitsConfig{Concurrency: 4}, 0)
	ctx := context.Background()

	t.Run("runtimes", func(t *testing.T) {
		res := run(t, f.a, api.RunRequest{Runtime: "python",
			Code:  "import sys, os\nprint(sys.stdin.read().upper())\nprint('warn', file=sys.stderr)\nprint(os.environ['GREETING'], os.getcwd(), os.getuid())\nsys.exit(3)",
			Stdin: "hello", Env: map[string]string{"GREETING": "hi"}})
		if res.Stdout != "HELLO\nhi /tmp/run 65534\n" || res.Stderr != "warn\n" || res.ExitCode != 3 || !res.Warm || res.CPUMs <= 0 || res.MemoryPeakBytes <= 0 {
			t.Errorf("python: %+v", res)
		}
		res = run(t, f.a, api.RunRequest{Runtime: "python", Code: "raise ValueError('boom')"})
		if res.ExitCode != 1 || !strings.Contains(res.Stderr, "ValueError: boom") || !strings.Contains(res.Stderr, `File "main.py", line 1`) {
			t.Errorf("python exception: %+v", res)
		}
		res = run(t, f.a, api.RunRequest{Runtime: "node",
			Code:  "const fs = require('fs');\nconsole.log(fs.readFileSync('in.txt', 'utf8') + process.env.GREETING);\nawait new Promise(r => setTimeout(r, 20));\nprocess.stderr.write('late\\n');\nprocess.exit(4)",
			Files: []api.RunFile{{Path: "in.txt", Content: "file-"}}, Env: map[string]string{"GREETING": "hi"}})
		if res.Stdout != "file-hi\n" || res.Stderr != "late\n" || res.ExitCode != 4 {
			t.Errorf("node: %+v", res)
		}
		res = run(t, f.a, api.RunRequest{Runtime: "node", Code: "null.x"})
		if res.ExitCode != 1 || !strings.Contains(res.Stderr, "TypeError") || !strings.Contains(res.Stderr, "main.js:1") {
			t.Errorf("node exception: %+v", res)
		}
		res = run(t, f.a, api.RunRequest{Runtime: "bash", Code: "read x; echo \"$x $BASH_VERSION\" | cut -c1-8; id -u; exit 5", Stdin: "hey\n"})
		if !strings.HasPrefix(res.Stdout, "hey 5.2.") || !strings.Contains(res.Stdout, "\n65534\n") || res.ExitCode != 5 {
			t.Errorf("bash: %+v", res)
		}
	})

	t.Run("files", func(t *testing.T) {
		bin := []byte{0, 1, 2, 0xff, 0xfe}
		res := run(t, f.a, api.RunRequest{Runtime: "python", Code: `
import os
data = open("in/bin.dat", "rb").read()
open("out/copy.dat", "wb").write(data[::-1])
open("note.txt", "w").write("made")
os.symlink("/etc/passwd", "link")
os.symlink("/etc", "dirlink")
os.mkfifo("fifo")
`, Files: []api.RunFile{
			{Path: "in/bin.dat", Content: base64.StdEncoding.EncodeToString(bin), Encoding: "base64"},
			{Path: "out/keep.txt", Content: "unchanged"},
		}})
		if res.ExitCode != 0 {
			t.Fatalf("%+v", res)
		}
		got := map[string]api.RunFile{}
		for _, fl := range res.Files {
			got[fl.Path] = fl
		}
		if len(got) != 2 || got["note.txt"].Content != "made" || got["out/copy.dat"].Encoding != "base64" {
			t.Fatalf("files: %+v (want note.txt and out/copy.dat only: no inputs, no links, no fifo)", res.Files)
		}
		if b, _ := base64.StdEncoding.DecodeString(got["out/copy.dat"].Content); string(b) != string([]byte{0xfe, 0xff, 2, 1, 0}) {
			t.Errorf("copy.dat = %v", b)
		}
		// The scratch directory is empty for the next run.
		res = run(t, f.a, api.RunRequest{Runtime: "bash", Code: "ls -A | wc -l"})
		if strings.TrimSpace(res.Stdout) != "0" {
			t.Errorf("scratch directory not cleared: %q", res.Stdout)
		}
	})

	t.Run("keys never share a runner", func(t *testing.T) {
		a := run(t, f.a, api.RunRequest{Runtime: "python", Code: "open('/tmp/secret-a', 'w').write('A'); print(open('/tmp/secret-a').read())"})
		again := run(t, f.a, api.RunRequest{Runtime: "python", Code: "print(open('/tmp/secret-a').read())"})
		if a.Stdout != "A\n" || again.Runner != a.Runner || again.Stdout != "A\n" {
			t.Fatalf("key A's runs: %+v / %+v", a, again)
		}
		for range 3 {
			b := run(t, f.b, api.RunRequest{Runtime: "python", Code: "import os; print(os.path.exists('/tmp/secret-a'), sorted(os.listdir('/tmp')))"})
			if b.Runner == a.Runner || !strings.HasPrefix(b.Stdout, "False") {
				t.Fatalf("key B saw key A's runner or file: %+v (A's runner %s)", b, a.Runner)
			}
		}
		// Ephemeral runs get a runner each, never used before.
		e1 := run(t, f.a, api.RunRequest{Runtime: "python", Mode: "ephemeral", Code: "open('/tmp/e', 'w').write('x'); print(1)"})
		e2 := run(t, f.a, api.RunRequest{Runtime: "python", Mode: "ephemeral", Code: "import os; print(os.path.exists('/tmp/e'), os.path.exists('/tmp/secret-a'))"})
		if e1.Runner == e2.Runner || e1.Runner == a.Runner || e2.Stdout != "False False\n" {
			t.Fatalf("ephemeral: %+v / %+v", e1, e2)
		}
	})

	t.Run("no network", func(t *testing.T) {
		res := run(t, f.a, api.RunRequest{Runtime: "python", TimeoutMs: 5000, Code: `
import socket
for host in ("1.1.1.1", "172.17.0.1", "169.254.169.254"):
    try:
        socket.create_connection((host, 80), timeout=1)
        print(host, "reached")
    except OSError as e:
        print(host, "unreachable")
print(open("/proc/net/dev").read().count(":"))
`})
		if strings.Contains(res.Stdout, "reached\n") && !strings.Contains(res.Stdout, "unreachable") || strings.Count(res.Stdout, "unreachable") != 3 {
			t.Fatalf("network from a run: %+v", res)
		}
		if !strings.HasSuffix(res.Stdout, "1\n") { // only lo
			t.Errorf("interfaces: %q", res.Stdout)
		}
	})

	t.Run("limits", func(t *testing.T) {
		check := func(name string, res api.RunResult, ok bool) {
			t.Helper()
			if !ok {
				t.Errorf("%s: %+v", name, res)
			}
			// The pool keeps serving others.
			if r := run(t, f.b, api.RunRequest{Runtime: "python", Code: "print(1)"}); r.Stdout != "1\n" {
				t.Errorf("after %s: %+v", name, r)
			}
		}
		res := run(t, f.a, api.RunRequest{Runtime: "bash", TimeoutMs: 3000, Code: "f() { f | f & }; f; sleep 1; echo survived"})
		check("fork bomb", res, (res.TimedOut || res.Leftover) && res.Runner != "")
		res = run(t, f.a, api.RunRequest{Runtime: "python", TimeoutMs: 20000, Code: "x = 'x' * (1 << 30)\nprint(len(x))"})
		check("memory bomb", res, res.OOM && res.ExitCode == 137)
		res = run(t, f.a, api.RunRequest{Runtime: "python", TimeoutMs: 1000, Code: "while True: pass"})
		check("infinite loop", res, res.TimedOut && res.DurationMs >= 1000 && res.DurationMs < 5000)
		res = run(t, f.a, api.RunRequest{Runtime: "node", TimeoutMs: 1000, Code: "while (true) {}"})
		check("node infinite loop", res, res.TimedOut)
		res = run(t, f.a, api.RunRequest{Runtime: "node", TimeoutMs: 1000, Code: "setInterval(() => {}, 10)"})
		check("node timer that never ends", res, res.TimedOut)
		res = run(t, f.a, api.RunRequest{Runtime: "python", TimeoutMs: 30000, Code: "import sys\nfor _ in range(100): sys.stdout.write('x' * 1_000_000)\nprint('done', file=sys.stderr)"})
		check("100 MB of output", res, res.Truncated && len(res.Stdout) == isolate.DefaultMaxOutput && res.Stderr == "done\n" && res.ExitCode == 0)
		res = run(t, f.a, api.RunRequest{Runtime: "python", Code: "import subprocess; subprocess.Popen(['sleep', '100']); print('left')"})
		check("leftover process", res, res.Leftover && res.Stdout == "left\n")
	})

	t.Run("concurrency quota", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var limited []*api.Error
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.b.Run(ctx, api.RunRequest{Runtime: "bash", Code: "sleep 2"})
				var e *api.Error
				if errors.As(err, &e) && e.Status == http.StatusTooManyRequests {
					mu.Lock()
					limited = append(limited, e)
					mu.Unlock()
				} else if err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if len(limited) != 2 || limited[0].RetryAfter < 1 || limited[0].Code != api.CodeRateLimited {
			t.Fatalf("6 runs at once with a quota of 4: %d refused (%v)", len(limited), limited)
		}
	})

	t.Run("usage", func(t *testing.T) {
		before := usageOf(t, f.b, "run", "bash")
		for range 3 {
			run(t, f.b, api.RunRequest{Runtime: "bash", Code: "echo -n abc"})
		}
		after := usageOf(t, f.b, "run", "bash")
		if after.Requests-before.Requests != 3 || after.BytesOut-before.BytesOut != 9 || after.CPUMs <= before.CPUMs {
			t.Fatalf("usage before %+v, after %+v", before, after)
		}
	})

	t.Run("pools", func(t *testing.T) {
		pl, err := f.a.Pools(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, p := range pl.Pools {
			seen[p.Runtime] = true
			if p.Runtime == "python" && p.MemoryMB == 256 && (p.Hits == 0 || p.RefillP50Ms <= 0 || p.MaxTotal <= 0) {
				t.Errorf("python pool: %+v", p)
			}
		}
		if !seen["python"] || !seen["node"] || !seen["bash"] {
			t.Errorf("pools: %+v", pl)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, body := range []string{
			`{"code":"print(1)"}`,
			`{"runtime":"ruby","code":"puts 1"}`,
			`{"runtime":"python","code":"  "}`,
			`{"runtime":"python","code":"print(1)","mode":"forever"}`,
			`{"runtime":"python","code":"print(1)","timeout_ms":-1}`,
			`{"runtime":"python","code":"print(1)","timeout_ms":3600000}`,
			`{"runtime":"python","code":"print(1)","memory_mb":8}`,
			`{"runtime":"python","code":"print(1)","files":[{"path":"../x","content":""}]}`,
			`{"runtime":"python","code":"print(1)","files":[{"path":"/etc/x","content":""}]}`,
			`{"runtime":"python","code":"print(1)","files":[{"path":"a","content":"!","encoding":"base64"}]}`,
			`{"runtime":"python","code":"print(1)","files":[{"path":"a","content":"","encoding":"rot13"}]}`,
			`{"runtime":"python","code":"print(1)","env":{"1BAD":"x"}}`,
			`{"runtime":"python","code":"print(1)","env":{"BOTHY_TOKEN":"x"}}`,
			`{"runtime":"python","code":"print(1)","surprise":1}`,
		} {
			status, b := call(t, f.url, http.MethodPost, "/v1/run", f.admin, body)
			if status != http.StatusBadRequest || !strings.Contains(string(b), `"invalid_argument"`) {
				t.Errorf("%s: %d %s", body, status, b)
			}
		}
	})
}

func usageOf(t *testing.T, c *api.Client, kind, app string) api.UsageRow {
	t.Helper()
	u, err := c.Usage(context.Background(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var sum api.UsageRow
	for _, r := range u.Rows {
		if r.Kind == kind && r.App == app {
			sum.Requests += r.Requests
			sum.BytesOut += r.BytesOut
			sum.CPUMs += r.CPUMs
			sum.RowsRead += r.RowsRead
			sum.RowsWritten += r.RowsWritten
			sum.Errors += r.Errors
		}
	}
	return sum
}

// Counter apps: every request adds one to a counter in storage and returns it.
const (
	pyCounter = `
def fetch(request, env):
    n = (env.storage.get("count") or 0) + 1
    env.storage.put("count", n)
    if request.query.get("fail"):
        raise RuntimeError("failing after the write")
    return {"status": 200, "headers": {"content-type": "text/plain"}, "body": str(n)}
`
	jsCounter = `
export default {
  async fetch(request, env) {
    const n = ((await env.storage.get("count")) || 0) + 1;
    await env.storage.put("count", n);
    if (new URL(request.url).searchParams.get("fail")) throw new Error("failing after the write");
    return new Response(String(n), { headers: { "content-type": "text/plain" } });
  },
};
`
)

func invoke(t *testing.T, c *api.Client, app, method, path, body string) (int, string, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	resp, err := c.Invoke(context.Background(), app, method, path, r, nil)
	if err != nil {
		t.Fatalf("invoke %s %s: %v", app, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestApps covers apps on the real engine: the counter in Python and in
// JavaScript across evictions and new versions, rollback, the storage API,
// isolation between apps, rate limits, logs and usage.
func TestApps(t *testing.T) {
	f := newDynFixture(t, supervisor.LimitsConfig{}, 3*time.Second)
	ctx := context.Background()

	for _, tc := range []struct{ runtime, code string }{{"python", pyCounter}, {"node", jsCounter}} {
		t.Run("counter "+tc.runtime, func(t *testing.T) {
			name := "counter-" + tc.runtime
			app, err := f.a.DeployApp(ctx, name, api.DeployAppRequest{Runtime: tc.runtime, Code: tc.code})
			if err != nil || app.Version != 1 {
				t.Fatalf("deploy: %+v %v", app, err)
			}
			want := 0
			next := func(why string) {
				t.Helper()
				want++
				status, body, hdr := invoke(t, f.a, name, http.MethodGet, "/", "")
				if status != 200 || body != strconv.Itoa(want) || hdr.Get("Content-Type") != "text/plain" {
					t.Fatalf("%s: %d %q %v, want %d", why, status, body, hdr, want)
				}
			}
			next("first")
			next("warm")
			// A thrown exception rolls the write back.
			status, body, hdr := invoke(t, f.a, name, http.MethodGet, "/?fail=1", "")
			if status != 500 || !strings.Contains(body, "failing after the write") || hdr.Get("X-Bothy-Error") != "" {
				t.Fatalf("failing invoke: %d %s", status, body)
			}
			next("after the rollback")
			f.iso.EvictApps()
			next("after eviction")
			// A new version drains the old runner and keeps the data.
			if app, err = f.a.DeployApp(ctx, name, api.DeployAppRequest{Runtime: tc.runtime, Code: tc.code + "\n"}); err != nil || app.Version != 2 {
				t.Fatalf("redeploy: %+v %v", app, err)
			}
			next("new version")
			// Another key has no such app.
			if _, err := f.b.Invoke(ctx, name, http.MethodGet, "/", nil, nil); !api.IsNotFound(err) {
				t.Fatalf("bob invoking alice's app: %v", err)
			}
		})
	}

	t.Run("in-memory state while warm", func(t *testing.T) {
		code := "hits = [0]\ndef fetch(request, env):\n    hits[0] += 1\n    return str(hits[0])\n"
		if _, err := f.a.DeployApp(ctx, "memory", api.DeployAppRequest{Runtime: "python", Code: code}); err != nil {
			t.Fatal(err)
		}
		for i, want := range []string{"1", "2", "3"} {
			if _, body, _ := invoke(t, f.a, "memory", "GET", "/", ""); body != want {
				t.Fatalf("request %d: %q", i, body)
			}
		}
		if app, err := f.a.GetApp(ctx, "memory"); err != nil || !app.Warm {
			t.Fatalf("an app that just answered is not warm: %+v %v", app, err)
		}
		// Idle for longer than the fixture's 3 s, the runner is evicted.
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
			app, err := f.a.GetApp(ctx, "memory")
			if err != nil {
				t.Fatal(err)
			}
			if !app.Warm {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the idle app's runner was never evicted")
			}
		}
		if _, body, _ := invoke(t, f.a, "memory", "GET", "/", ""); body != "1" {
			t.Fatalf("after an idle eviction the state starts again: %q", body)
		}
	})

	t.Run("request and response", func(t *testing.T) {
		py := `
import json
def fetch(request, env):
    if request.path == "/bytes":
        return b"\x00\x01"
    if request.path == "/obj":
        return Response.json({"m": request.method, "q": request.query, "h": request.headers.get("x-test"), "b": request.json()}, status=201)
    if request.path == "/none":
        return None
    return request.method + " " + request.path
`
		if _, err := f.a.DeployApp(ctx, "echo", api.DeployAppRequest{Runtime: "python", Code: py}); err != nil {
			t.Fatal(err)
		}
		if status, body, _ := invoke(t, f.a, "echo", "DELETE", "/a/b", ""); status != 200 || body != "DELETE /a/b" {
			t.Errorf("str: %d %q", status, body)
		}
		if status, body, _ := invoke(t, f.a, "echo", "GET", "/bytes", ""); status != 200 || body != "\x00\x01" {
			t.Errorf("bytes: %d %q", status, body)
		}
		if status, _, _ := invoke(t, f.a, "echo", "GET", "/none", ""); status != 204 {
			t.Errorf("None: %d", status)
		}
		resp, err := f.a.Invoke(ctx, "echo", "POST", "/obj?x=1&y=2", strings.NewReader(`{"k":[1,2]}`), http.Header{"X-Test": {"yes"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 || resp.Header.Get("Content-Type") != "application/json" ||
			string(b) != `{"m": "POST", "q": {"x": "1", "y": "2"}, "h": "yes", "b": {"k": [1, 2]}}` {
			t.Errorf("Response.json: %d %s", resp.StatusCode, b)
		}
		js := `
module.exports = {
  async fetch(request, env) {
    const u = new URL(request.url);
    const body = request.method === "POST" ? await request.json() : null;
    return Response.json({ m: request.method, p: u.pathname, q: u.searchParams.get("x"), h: request.headers.get("x-test"), b: body }, { status: 202 });
  },
};
`
		if _, err := f.a.DeployApp(ctx, "echo-js", api.DeployAppRequest{Runtime: "javascript", Code: js}); err != nil {
			t.Fatal(err)
		}
		resp, err = f.a.Invoke(ctx, "echo-js", "POST", "/p/q?x=1", strings.NewReader(`{"k":true}`), http.Header{"X-Test": {"yes"}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 || string(b) != `{"m":"POST","p":"/p/q","q":"1","h":"yes","b":{"k":true}}` {
			t.Errorf("js Response.json: %d %s", resp.StatusCode, b)
		}
	})

	t.Run("storage", func(t *testing.T) {
		py := `
def fetch(request, env):
    s = env.storage
    vals = {"int": 7, "float": 2.5, "str": "x", "bool": True, "none": None, "list": [1, "a"], "dict": {"k": [None]}}
    for k, v in vals.items():
        s.put("t/" + k, v)
    back = {k: s.get("t/" + k, "missing") for k in vals}
    same = all(back[k] == v and type(back[k]) is type(v) for k, v in vals.items())
    listed = s.list("t/")
    s.sql.exec("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
    w = s.sql.exec("INSERT INTO items (name) VALUES (?), (?)", "a", "b")
    rows = s.sql.exec("SELECT id, name FROM items WHERE name >= ? ORDER BY id", "a")
    try:
        with s.transaction():
            s.put("t/int", 8)
            raise KeyError("undo")
    except KeyError:
        pass
    with s.transaction():
        s.put("t/str", "y")
    return {"body": {"same": same, "listed": sorted(listed) == sorted("t/" + k for k in vals),
        "written": w.rows_written, "read": rows.rows_read, "rows": list(rows),
        "int": s.get("t/int"), "str": s.get("t/str"), "deleted": s.delete("t/none"), "gone": s.delete("nope")}}
`
		if _, err := f.a.DeployApp(ctx, "store", api.DeployAppRequest{Runtime: "python", Code: py}); err != nil {
			t.Fatal(err)
		}
		status, body, _ := invoke(t, f.a, "store", "GET", "/", "")
		want := `{"same": true, "listed": true, "written": 2, "read": 2, "rows": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}], "int": 7, "str": "y", "deleted": true, "gone": false}`
		if status != 200 || body != want {
			t.Fatalf("python storage: %d %s\nwant %s", status, body, want)
		}
		js := `
export default {
  async fetch(request, env) {
    const s = env.storage;
    const vals = { int: 7, float: 2.5, str: "x", bool: true, nul: null, list: [1, "a"], obj: { k: [null] } };
    for (const [k, v] of Object.entries(vals)) await s.put("t/" + k, v);
    const same = [];
    for (const [k, v] of Object.entries(vals)) same.push(JSON.stringify(await s.get("t/" + k)) === JSON.stringify(v));
    const listed = await s.list("t/");
    await s.sql.exec("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)");
    const w = await s.sql.exec("INSERT INTO items (name) VALUES (?)", "js");
    const one = (await s.sql.exec("SELECT count(*) AS n FROM items")).one();
    try { await s.transaction(async () => { await s.put("t/int", 8); throw new Error("undo"); }); } catch (e) {}
    return Response.json({ same: same.every(Boolean), listed: listed.size, missing: await s.get("nope"),
      written: w.rowsWritten, n: one.n, int: await s.get("t/int") });
  },
};
`
		if _, err := f.a.DeployApp(ctx, "store-js", api.DeployAppRequest{Runtime: "node", Code: js}); err != nil {
			t.Fatal(err)
		}
		status, body, _ = invoke(t, f.a, "store-js", "GET", "/", "")
		if status != 200 || body != `{"same":true,"listed":7,"written":1,"n":1,"int":7}` {
			t.Fatalf("js storage: %d %s", status, body)
		}
		// Rows read and written reach the logs and the usage.
		logs, err := f.a.AppLogs(ctx, "store", 10)
		if err != nil || len(logs.Entries) != 1 || logs.Entries[0].RowsWritten < 9 || logs.Entries[0].RowsRead < 9 || logs.Entries[0].Status != 200 {
			t.Fatalf("logs: %+v %v", logs, err)
		}
		if u := usageOf(t, f.a, "invoke", "store"); u.Requests != 1 || u.RowsWritten != logs.Entries[0].RowsWritten {
			t.Fatalf("usage %+v, log %+v", u, logs.Entries[0])
		}
	})

	t.Run("apps cannot reach each other's data", func(t *testing.T) {
		secret := "def fetch(request, env):\n    env.storage.put('secret', 's3cret')\n    env.storage.sql.exec('CREATE TABLE IF NOT EXISTS hidden (v TEXT)')\n    env.storage.sql.exec(\"INSERT INTO hidden VALUES ('s3cret')\")\n    return 'ok'\n"
		if _, err := f.b.DeployApp(ctx, "vault", api.DeployAppRequest{Runtime: "python", Code: secret}); err != nil {
			t.Fatal(err)
		}
		if status, body, _ := invoke(t, f.b, "vault", "GET", "/", ""); status != 200 || body != "ok" {
			t.Fatalf("vault: %d %s", status, body)
		}
		// The same name under another key is another app.
		probe := `
import glob, os
def fetch(request, env):
    out = {"get": env.storage.get("secret"), "list": env.storage.list(""),
           "tables": [r["name"] for r in env.storage.sql.exec("SELECT name FROM sqlite_master")]}
    attempts = {}
    attaches = ["ATTACH DATABASE '%s' AS v" % p for p in request.query["paths"].split(",")]
    for q in attaches + ["ATTACH ':memory:' AS m", "VACUUM INTO '/tmp/copy.db'",
              "SELECT * FROM pragma_database_list", "PRAGMA database_list",
              "PRAGMA max_page_count = 100000000", "COMMIT", "SELECT load_extension('x')"]:
        try:
            env.storage.sql.exec(q)
            attempts[q] = "allowed"
        except Exception as e:
            attempts[q] = "refused"
    out["attempts"] = attempts
    out["files"] = [p for d in ("/tmp", "/root", "/home", "/var", "/srv", "/opt", "/mnt", "/.bothy", "/etc")
                    for p in glob.glob(d + "/**/*.db*", recursive=True)]
    return {"body": out}
`
		if _, err := f.a.DeployApp(ctx, "vault", api.DeployAppRequest{Runtime: "python", Code: probe}); err != nil {
			t.Fatal(err)
		}
		dbs, _ := filepath.Glob(filepath.Join(f.data, "apps", "*", "app.db"))
		if len(dbs) < 2 {
			t.Fatalf("app databases: %v", dbs)
		}
		status, body, _ := invoke(t, f.a, "vault", "GET", "/?paths="+url.QueryEscape(strings.Join(dbs, ",")), "")
		var out struct {
			Get      any               `json:"get"`
			List     map[string]any    `json:"list"`
			Tables   []string          `json:"tables"`
			Attempts map[string]string `json:"attempts"`
			Files    []string          `json:"files"`
		}
		if status != 200 || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("probe: %d %s", status, body)
		}
		if out.Get != nil || len(out.List) != 0 || strings.Contains(body, "hidden") || strings.Contains(body, "s3cret") {
			t.Fatalf("app A saw app B's data: %s", body)
		}
		for q, r := range out.Attempts {
			if r != "refused" {
				t.Errorf("%s was %s", q, r)
			}
		}
		if len(out.Files) != 0 {
			t.Errorf("database files visible in the runner: %v", out.Files)
		}
	})

	t.Run("quota", func(t *testing.T) {
		code := "def fetch(request, env):\n    env.storage.put('big/' + request.path, 'x' * 200000)\n    return 'ok'\n"
		if _, err := f.a.DeployApp(ctx, "small", api.DeployAppRequest{Runtime: "python", Code: code, Limits: api.AppLimits{StorageBytes: 1 << 20}}); err != nil {
			t.Fatal(err)
		}
		var refused string
		for i := range 10 {
			status, body, _ := invoke(t, f.a, "small", "GET", fmt.Sprintf("/%d", i), "")
			if status != 200 {
				refused = body
				break
			}
		}
		if !strings.Contains(refused, "quota") {
			t.Fatalf("1 MiB quota never refused a write: %q", refused)
		}
		if app, err := f.a.GetApp(ctx, "small"); err != nil || app.StorageBytes > 1<<20 || app.StorageBytes < 512<<10 {
			t.Fatalf("storage_bytes: %+v %v", app, err)
		}
	})

	t.Run("runner killed mid-request", func(t *testing.T) {
		code := "import time\ndef fetch(request, env):\n    n = (env.storage.get('n') or 0) + 1\n    env.storage.put('n', n)\n    if request.path == '/slow':\n        open('/tmp/slow-started', 'w').close()\n        time.sleep(30)\n    return str(n)\n"
		if _, err := f.a.DeployApp(ctx, "fragile", api.DeployAppRequest{Runtime: "python", Code: code}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"1", "2"} {
			if _, body, _ := invoke(t, f.a, "fragile", "GET", "/", ""); body != want {
				t.Fatalf("got %q, want %s", body, want)
			}
		}
		done := make(chan error, 1)
		go func() {
			resp, err := f.a.Invoke(ctx, "fragile", "GET", "/slow", nil, nil)
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			done <- err
		}()
		// Once the slow request runs in the app's runner (it marks its
		// /tmp), kill every runner of this test: the app's is among them.
		var cs []runtime.Container
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
			var err error
			cs, err = f.d.List(ctx, map[string]string{runtime.LabelInstance: f.instance, runtime.LabelKind: runtime.KindRunner})
			if err != nil {
				t.Fatal(err)
			}
			started := false
			for _, c := range cs {
				if code, err := f.d.DockerExec(ctx, c.ID, []string{"test", "-e", "/tmp/slow-started"}); err == nil && code == 0 {
					started = true
				}
			}
			if started {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the slow request never reached the app")
			}
		}
		for _, c := range cs {
			_ = f.d.Remove(ctx, c.ID)
		}
		select {
		case err := <-done:
			t.Logf("the interrupted request: %v", err)
		case <-time.After(20 * time.Second):
			t.Fatal("the interrupted request did not end")
		}
		if _, body, _ := invoke(t, f.a, "fragile", "GET", "/", ""); body != "3" {
			t.Fatalf("after the kill: %q, want 3 (two committed, the third lost)", body)
		}
	})

	t.Run("rate limit", func(t *testing.T) {
		code := "def fetch(request, env):\n    return 'ok'\n"
		// One token per 1000 s: however long a cold start takes on a
		// loaded machine, the bucket does not refill during the test (the
		// refill itself is the supervisor's unit test, on a fake clock).
		if _, err := f.a.DeployApp(ctx, "limited", api.DeployAppRequest{Runtime: "python", Code: code, Limits: api.AppLimits{RatePerSec: 0.001, Burst: 2}}); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if status, _, _ := invoke(t, f.a, "limited", "GET", "/", ""); status != 200 {
				t.Fatalf("request %d: %d", i, status)
			}
		}
		_, err := f.a.Invoke(ctx, "limited", "GET", "/", nil, nil)
		var e *api.Error
		if !errors.As(err, &e) {
			t.Fatalf("third request at once: %v", err)
		}
		if e.Status != 429 || e.RetryAfter < 500 || e.RetryAfter > 1000 || e.Code != api.CodeRateLimited {
			t.Fatalf("third request at once: %v (Retry-After %d)", err, e.RetryAfter)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for _, tc := range []struct{ name, body string }{
			{"Bad_Name", `{"runtime":"python","code":"x"}`},
			{"-dash", `{"runtime":"python","code":"x"}`},
			{"ok", `{"runtime":"bash","code":"x"}`},
			{"ok", `{"runtime":"python","code":""}`},
			{"ok", `{"runtime":"python","code":"x","limits":{"timeout_ms":999999}}`},
			{"ok", `{"runtime":"python","code":"x","limits":{"storage_bytes":1}}`},
			{"ok", `{"runtime":"python","code":"x","limits":{"rate_per_sec":-1}}`},
		} {
			status, b := call(t, f.url, http.MethodPut, "/v1/apps/"+tc.name, f.admin, tc.body)
			if status != http.StatusBadRequest {
				t.Errorf("PUT %s %s: %d %s", tc.name, tc.body, status, b)
			}
		}
		if _, err := f.a.GetApp(ctx, "ok"); !api.IsNotFound(err) {
			t.Errorf("a refused deploy made an app: %v", err)
		}
		if _, err := f.a.Invoke(ctx, "missing", "GET", "/", nil, nil); !api.IsNotFound(err) {
			t.Errorf("invoke of a missing app: %v", err)
		}
		// An app that fails to load answers 500 with its error.
		if _, err := f.a.DeployApp(ctx, "broken", api.DeployAppRequest{Runtime: "python", Code: "def fetch(:"}); err != nil {
			t.Fatal(err)
		}
		if status, body, _ := invoke(t, f.a, "broken", "GET", "/", ""); status != 500 || !strings.Contains(body, "SyntaxError") {
			t.Errorf("broken app: %d %s", status, body)
		}
		if err := f.a.DeleteApp(ctx, "broken"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.a.GetApp(ctx, "broken"); !api.IsNotFound(err) {
			t.Errorf("deleted app: %v", err)
		}
	})
}
