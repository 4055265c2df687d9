package server

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bothy/bothy/agent/wire"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/isolate"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/shell"
	"github.com/bothy/bothy/snapshot"
	"github.com/bothy/bothy/supervisor"
)

// fullFixture serves every route of the real router over every real
// component: orchestrator, snapshots, runner pools, ledger and limits. Keys:
// admin, and two ordinary keys a and b.
type fullFixture struct {
	*base
	url    string
	srv    *Server
	bKey   string
	aID    string
	bID    string
	orch   *orchestrator.Orchestrator
	cfg    Config
	a, b   *api.Client
	adminC *api.Client
}

func newFullFixture(t *testing.T, cfg Config) *fullFixture {
	t.Helper()
	ctx := context.Background()
	b := newBase(t)
	instance := "fulltest-" + filepath.Base(b.data)
	// The keys' quotas reach the domain as cmd/bothyd wires them.
	sandboxQuota := func(ctx context.Context, owner string) (orchestrator.Quota, error) {
		k, err := b.keys.Get(ctx, owner)
		q := k.Quota
		return orchestrator.Quota{Sandboxes: q.Sandboxes, Running: q.Running, MemoryMB: q.MemoryMB, CPUs: q.CPUs, DiskMB: q.DiskMB}, err
	}
	snapshotQuota := func(ctx context.Context, owner string) (snapshot.Quota, error) {
		k, err := b.keys.Get(ctx, owner)
		return snapshot.Quota{Snapshots: k.Quota.Snapshots, Bytes: k.Quota.SnapshotBytes}, err
	}
	snaps, err := snapshot.New(ctx, snapshot.Config{Instance: instance, Scratch: filepath.Join(b.data, "tmp"), Quotas: snapshotQuota},
		b.sq, b.d, b.log)
	if err != nil {
		t.Fatal(err)
	}
	o, err := orchestrator.New(ctx, orchestrator.Config{
		Instance: instance, DataDir: b.data, AgentBinary: testenv.AgentBinary(t),
		Network: network, Bridge: bridge, DefaultImage: images.Busybox, Quotas: sandboxQuota, Checkpoints: snaps,
	}, b.d, b.images, b.sq, b.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	ledger, err := supervisor.NewLedger(ctx, b.sq, b.log)
	if err != nil {
		t.Fatal(err)
	}
	iso, err := isolate.New(ctx, isolate.Config{
		Instance: instance, DataDir: b.data, AgentHost: o.AgentHost(),
		Images: map[string]string{
			wire.RuntimePython: images.RunnerPython, wire.RuntimeNode: images.RunnerNode, wire.RuntimeBash: images.RunnerBash,
		},
		MinIdle: map[string]int{wire.RuntimePython: 0, wire.RuntimeNode: 0, wire.RuntimeBash: 0},
		Limits:  supervisor.NewLimits(supervisor.LimitsConfig{}), Ledger: ledger,
	}, b.d, b.images, b.sq, b.log)
	if err != nil {
		t.Fatal(err)
	}
	iso.Start()
	srv := New(cfg, Deps{Orchestrator: o, Keys: b.keys, Tickets: supervisor.NewTickets(), Images: b.images,
		Files: fsapi.New(o, snaps, fsapi.Limits{MaxFileBytes: cfg.MaxFileBytes}), Shell: shell.New(o, b.log), Processes: process.New(o), Ports: mustPorts(t, o, b),
		Snapshots: snaps, Isolate: iso, Ledger: ledger, DB: b.sq, Log: b.log})
	url := b.serve(t, srv, instance, func() { ledger.Close(); iso.Close(); o.Close() })
	aKey, err := b.keys.Authenticate(ctx, b.user)
	if err != nil {
		t.Fatal(err)
	}
	bk, bSecret, err := b.keys.Create(ctx, "b", false)
	if err != nil {
		t.Fatal(err)
	}
	return &fullFixture{base: b, url: url, srv: srv, bKey: bSecret, aID: aKey.ID, bID: bk.ID, orch: o, cfg: srv.cfg,
		a: api.NewClient(url, b.user), b: api.NewClient(url, bSecret), adminC: api.NewClient(url, b.admin)}
}

// mustSnapshot makes a sandbox of c's, runs shell in it and checkpoints it;
// the snapshot is deleted when the test ends.
func mustSnapshot(t *testing.T, c *api.Client, shell string, req api.CreateSnapshotRequest) (api.Sandbox, api.Snapshot) {
	t.Helper()
	sb := mustCreate(t, c)
	mustShell(t, c, sb.ID, shell)
	snap, err := c.CreateSnapshot(context.Background(), sb.ID, req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DeleteSnapshot(context.Background(), snap.ID) })
	return sb, snap
}

// routeKeys lists "METHOD path" of every route the server registers.
func routeKeys(srv *Server) []string {
	var out []string
	for _, r := range srv.e.Router().Routes() {
		out = append(out, r.Method+" "+r.Path)
	}
	sort.Strings(out)
	return out
}

// TestEveryRouteLimitsItsBodyBeforeReadingIt sends a body that claims to be
// 1 GiB to every route (with and without a Content-Length) and checks that
// the server reads no more of it than the route's limit allows.
func TestEveryRouteLimitsItsBodyBeforeReadingIt(t *testing.T) {
	t.Parallel()
	f := newFullFixture(t, Config{BodyLimit: 1 << 20, MaxFileBytes: 4 << 20})
	sb := mustCreate(t, f.a)
	// The largest of the fixture's limits, with room for what the sockets
	// buffer in flight before the server's answer stops the client.
	limit := int64(32 << 20)
	for _, rk := range routeKeys(f.srv) {
		method, route, _ := strings.Cut(rk, " ")
		if strings.HasPrefix(method, "echo_route_") {
			method = http.MethodPost
		}
		path := strings.NewReplacer(":id", sb.ID, ":name", "app", ":session", "s1", "*", "x").Replace(route)
		// The path of a route that contains the name of another is no way
		// around a limit.
		paths := []string{path, strings.Replace(path, sb.ID, "invoke", 1)}
		for _, p := range paths {
			for _, sized := range []bool{true, false} {
				var read atomic.Int64
				body := testenv.Body(1<<30, &read)
				req, _ := http.NewRequest(method, f.url+p, body)
				if sized {
					req.ContentLength = 1 << 30
				} else {
					req.ContentLength = -1
				}
				req.Header.Set("Authorization", "Bearer "+f.user)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					// A route that takes no body may ignore one it is not
					// told the size of; a told size is refused by all.
					if sized && resp.StatusCode < 400 {
						t.Errorf("%s %s (sized %v): status %d for a 1 GiB body", method, p, sized, resp.StatusCode)
					}
				}
				if n := read.Load(); n > limit {
					t.Errorf("%s %s (sized %v): the server read %d bytes of the body, more than %d", method, p, sized, n, limit)
				}
			}
		}
	}
}

// TestTenancyOnEveryRoute has key b try every route on key a's sandbox,
// snapshot and app. The table must name every route the server registers, so
// a new route without a two-key check fails this test.
func TestTenancyOnEveryRoute(t *testing.T) {
	t.Parallel()
	f := newFullFixture(t, Config{})
	ctx := context.Background()
	sb, snap := mustSnapshot(t, f.a, "echo a-secret > /root/secret", api.CreateSnapshotRequest{Name: "a-snap"})
	if _, err := f.a.DeployApp(ctx, "a-app", api.DeployAppRequest{Runtime: "python",
		Code: "def fetch(request, env):\n    return 'a-app'\n"}); err != nil {
		t.Fatal(err)
	}
	if code, body, _ := invoke(t, f.a, "a-app", "GET", "/", ""); code != 200 || body != "a-app" {
		t.Fatalf("a's app: %d %s", code, body)
	}
	imgs, err := f.adminC.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	snapImageID := ""
	for _, img := range imgs.Images {
		if img.Name == "bothy/snapshot:"+snap.ID {
			snapImageID = img.ID
		}
	}
	if snapImageID == "" {
		t.Fatalf("the admin does not see a's snapshot image: %+v", imgs.Images)
	}

	proc, err := f.a.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "cat", Tag: "a-proc", Stdin: true})
	if err != nil {
		t.Fatal(err)
	}

	// Everything of a's that b must never see in any answer.
	secrets := []string{sb.ID, snap.ID, "a-app", "a-secret", f.aID, snapImageID, "a-proc"}
	type check struct {
		method, path, body string
		// want is the status b must get; 0 means any 2xx, whose body must
		// hold none of a's names.
		want int
	}
	s, sn := "/v1/sandboxes/"+sb.ID, "/v1/snapshots/"+snap.ID
	pr := s + "/processes/" + strconv.Itoa(proc.PID)
	table := map[string][]check{
		"GET /healthz":                                      {{"GET", "/healthz", "", 0}},
		"GET /readyz":                                       {{"GET", "/readyz", "", 0}},
		"GET /":                                             {{"GET", "/", "", 0}},
		"GET /docs":                                         {{"GET", "/docs", "", 0}},
		"GET /openapi.json":                                 {{"GET", "/openapi.json", "", 0}},
		"GET /static/*":                                     {{"GET", "/static/app.js", "", 0}},
		"GET /vendor/*":                                     {{"GET", "/vendor/xterm.js", "", 0}},
		"GET /v1/sandboxes/:id/pty":                         {{"GET", s + "/pty", "", 404}},
		"GET /v1/sandboxes/:id/exec":                        {{"GET", s + "/exec?cmd=true", "", 404}},
		"POST /v1/sandboxes":                                {{"POST", "/v1/sandboxes", `{"snapshot":"` + snap.ID + `"}`, 404}, {"POST", "/v1/sandboxes", `{"image":"bothy/snapshot:` + snap.ID + `"}`, 400}, {"POST", "/v1/sandboxes", `{"image":"` + snapImageID + `"}`, 400}},
		"GET /v1/sandboxes":                                 {{"GET", "/v1/sandboxes", "", 0}},
		"GET /v1/sandboxes/:id":                             {{"GET", s, "", 404}},
		"PATCH /v1/sandboxes/:id":                           {{"PATCH", s, `{"labels":{"x":"y"}}`, 404}},
		"DELETE /v1/sandboxes/:id":                          {{"DELETE", s, "", 404}},
		"POST /v1/sandboxes/:id/stop":                       {{"POST", s + "/stop", "", 404}},
		"POST /v1/sandboxes/:id/start":                      {{"POST", s + "/start", "", 404}},
		"POST /v1/sandboxes/:id/snapshots":                  {{"POST", s + "/snapshots", `{}`, 404}},
		"POST /v1/sandboxes/:id/restore":                    {{"POST", s + "/restore", `{"snapshot":"` + snap.ID + `"}`, 404}},
		"POST /v1/sandboxes/:id/fork":                       {{"POST", s + "/fork", `{"count":1}`, 404}},
		"GET /v1/snapshots":                                 {{"GET", "/v1/snapshots", "", 0}, {"GET", "/v1/snapshots?sandbox=" + sb.ID, "", 0}},
		"GET /v1/snapshots/:id":                             {{"GET", sn, "", 404}},
		"GET /v1/snapshots/:id/export":                      {{"GET", sn + "/export", "", 404}},
		"GET /v1/snapshots/:id/diff":                        {{"GET", sn + "/diff?to=" + sb.ID, "", 404}},
		"POST /v1/snapshots/import":                         {{"POST", "/v1/snapshots/import", "not a tar", 400}},
		"DELETE /v1/snapshots/:id":                          {{"DELETE", sn, "", 404}},
		"POST /v1/sandboxes/:id/pause":                      {{"POST", s + "/pause", "", 404}},
		"POST /v1/sandboxes/:id/resume":                     {{"POST", s + "/resume", "", 404}},
		"POST /v1/sandboxes/:id/exec":                       {{"POST", s + "/exec", `{"shell":"cat /root/secret"}`, 404}},
		"GET /v1/sandboxes/:id/files":                       {{"GET", s + "/files?path=/root/secret", "", 404}},
		"PUT /v1/sandboxes/:id/files":                       {{"PUT", s + "/files?path=/root/secret", "b", 404}},
		"DELETE /v1/sandboxes/:id/files":                    {{"DELETE", s + "/files?path=/root/secret", "", 404}},
		"GET /v1/sandboxes/:id/files/stat":                  {{"GET", s + "/files/stat?path=/root/secret", "", 404}},
		"GET /v1/sandboxes/:id/files/watch":                 {{"GET", s + "/files/watch?path=/root", "", 404}},
		"POST /v1/sandboxes/:id/files/mkdir":                {{"POST", s + "/files/mkdir", `{"path":"/root/b"}`, 404}},
		"POST /v1/sandboxes/:id/files/move":                 {{"POST", s + "/files/move", `{"from":"/root/secret","to":"/root/b"}`, 404}},
		"POST /v1/sandboxes/:id/files/chmod":                {{"POST", s + "/files/chmod", `{"path":"/root/secret","mode":"0777"}`, 404}},
		"GET /v1/sandboxes/:id/archive":                     {{"GET", s + "/archive?path=/root", "", 404}},
		"PUT /v1/sandboxes/:id/archive":                     {{"PUT", s + "/archive?path=/root", "x", 404}},
		"POST /v1/sandboxes/:id/pty/tickets":                {{"POST", s + "/pty/tickets", "", 404}},
		"GET /v1/sandboxes/:id/pty/sessions":                {{"GET", s + "/pty/sessions", "", 404}},
		"DELETE /v1/sandboxes/:id/pty/sessions/:session":    {{"DELETE", s + "/pty/sessions/pty-1", "", 404}},
		"POST /v1/sandboxes/:id/processes":                  {{"POST", s + "/processes", `{"shell":"cat /root/secret"}`, 404}},
		"GET /v1/sandboxes/:id/processes":                   {{"GET", s + "/processes", "", 404}},
		"GET /v1/sandboxes/:id/processes/:pid":              {{"GET", pr, "", 404}},
		"DELETE /v1/sandboxes/:id/processes/:pid":           {{"DELETE", pr, "", 404}},
		"GET /v1/sandboxes/:id/processes/:pid/logs":         {{"GET", pr + "/logs", "", 404}},
		"GET /v1/sandboxes/:id/processes/:pid/wait":         {{"GET", pr + "/wait?timeout_ms=1", "", 404}},
		"POST /v1/sandboxes/:id/processes/:pid/signal":      {{"POST", pr + "/signal", `{"signal":"KILL"}`, 404}},
		"POST /v1/sandboxes/:id/processes/:pid/stdin":       {{"POST", pr + "/stdin", "x", 404}},
		"POST /v1/sandboxes/:id/processes/:pid/stdin/close": {{"POST", pr + "/stdin/close", "", 404}},
		"POST /v1/sandboxes/:id/ports":                      {{"POST", s + "/ports", `{"port":8000}`, 404}},
		"GET /v1/sandboxes/:id/ports":                       {{"GET", s + "/ports", "", 404}},
		"DELETE /v1/sandboxes/:id/ports/:port":              {{"DELETE", s + "/ports/8000", "", 404}},
		"GET /v1/sandboxes/:id/ports/:port/wait":            {{"GET", s + "/ports/8000/wait?timeout_ms=1", "", 404}},
		"echo_route_any /v1/sandboxes/:id/ports/:port/*":    {{"GET", s + "/ports/8000/", "", 404}, {"POST", s + "/ports/8000/x", "y", 404}},
		"POST /v1/run":                                      {{"POST", "/v1/run", `{"runtime":"bash","code":"echo b"}`, 0}},
		"GET /v1/pools":                                     {{"GET", "/v1/pools", "", 403}},
		"GET /v1/routes":                                    {{"GET", "/v1/routes", "", 403}},
		"GET /metrics":                                      {{"GET", "/metrics", "", 403}},
		"GET /v1/apps":                                      {{"GET", "/v1/apps", "", 0}},
		"GET /v1/apps/:name":                                {{"GET", "/v1/apps/a-app", "", 404}},
		"GET /v1/apps/:name/logs":                           {{"GET", "/v1/apps/a-app/logs", "", 404}},
		"echo_route_any /v1/apps/:name/invoke":              {{"POST", "/v1/apps/a-app/invoke", "", 404}},
		"echo_route_any /v1/apps/:name/invoke/*":            {{"GET", "/v1/apps/a-app/invoke/x", "", 404}},
		"DELETE /v1/apps/:name":                             {{"DELETE", "/v1/apps/a-app", "", 404}},
		// b may deploy an app of the same name: it is b's own, beside a's.
		"PUT /v1/apps/:name":  {{"PUT", "/v1/apps/a-app", `{"runtime":"python","code":"def fetch(request, env):\n    return 'b'\n"}`, 0}},
		"GET /v1/usage":       {{"GET", "/v1/usage", "", 0}, {"GET", "/v1/usage?all=true", "", 403}},
		"GET /v1/images":      {{"GET", "/v1/images", "", 0}},
		"POST /v1/images":     {{"POST", "/v1/images", `{"name":"bothy/busybox"}`, 403}},
		"DELETE /v1/images/*": {{"DELETE", "/v1/images/bothy/snapshot:" + snap.ID, "", 403}},
		"POST /v1/keys":       {{"POST", "/v1/keys", `{"name":"x"}`, 403}},
		"GET /v1/keys":        {{"GET", "/v1/keys", "", 403}},
		"DELETE /v1/keys/:id": {{"DELETE", "/v1/keys/" + f.aID, "", 403}},
		"PATCH /v1/keys/:id":  {{"PATCH", "/v1/keys/" + f.bID, `{"quota":{"sandboxes":1000}}`, 403}},
	}
	routes := map[string]bool{}
	for _, rk := range routeKeys(f.srv) {
		if strings.HasPrefix(rk, "echo_route_not_found ") {
			continue // answers 404 whoever asks
		}
		routes[rk] = true
		if _, ok := table[rk]; !ok {
			t.Errorf("route %s has no two-key check in this table", rk)
		}
	}
	for rk := range table {
		if !routes[rk] {
			t.Errorf("the table checks %s, which is not a route", rk)
		}
	}
	order := make([]string, 0, len(table))
	for rk := range table {
		order = append(order, rk)
	}
	sort.Strings(order)
	// b's deploy runs last, so that b's reads of a-app find nothing.
	sort.SliceStable(order, func(i, j int) bool { return order[j] == "PUT /v1/apps/:name" })
	for _, rk := range order {
		for _, c := range table[rk] {
			status, body := call(t, f.url, c.method, c.path, f.bKey, c.body)
			switch {
			case c.want == 0 && (status < 200 || status > 299):
				t.Errorf("%s %s as b: status %d, want 2xx: %s", c.method, c.path, status, body)
			case c.want != 0 && status != c.want:
				t.Errorf("%s %s as b: status %d, want %d: %s", c.method, c.path, status, c.want, body)
			}
			for _, secret := range secrets {
				if strings.Contains(string(body), secret) && !strings.Contains(c.path+c.body, secret) {
					t.Errorf("%s %s as b: the answer names a's %q: %s", c.method, c.path, secret, body)
				}
			}
		}
	}

	// a's things are as they were.
	if got := mustShell(t, f.a, sb.ID, "cat /root/secret"); got != "a-secret\n" {
		t.Fatalf("a's file after b's calls: %q", got)
	}
	if cur, err := f.a.GetSandbox(ctx, sb.ID); err != nil || cur.State != api.StateRunning || len(cur.Labels) != 0 {
		t.Fatalf("a's sandbox after b's calls: %+v %v", cur, err)
	}
	if _, err := f.a.GetSnapshot(ctx, snap.ID); err != nil {
		t.Fatalf("a's snapshot after b's calls: %v", err)
	}
	if code, body, _ := invoke(t, f.a, "a-app", "GET", "/", ""); code != 200 || body != "a-app" {
		t.Fatalf("a's app after b's calls: %d %s", code, body)
	}
	if code, body, _ := invoke(t, f.b, "a-app", "GET", "/", ""); code != 200 || body != "b" {
		t.Fatalf("b's own app of the same name: %d %s", code, body)
	}
}

// TestImagesOfOneKeyAreNotAnothers: a snapshot's image is listed to and usable
// by its own key only, whether named by tag or by ID.
func TestImagesOfOneKeyAreNotAnothers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := api.NewClient(f.url, f.user)
	_, snap := mustSnapshot(t, a, "echo mine > /root/f", api.CreateSnapshotRequest{})
	admin := api.NewClient(f.url, f.admin)
	list := func(c *api.Client) map[string]string {
		imgs, err := c.ListImages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, img := range imgs.Images {
			out[img.Name] = img.ID
		}
		return out
	}
	ref := "bothy/snapshot:" + snap.ID
	id := list(admin)[ref]
	if id == "" {
		t.Fatalf("the admin does not see %s", ref)
	}
	if _, ok := list(a)[ref]; !ok {
		t.Fatalf("a does not see its own snapshot's image")
	}
	// b is a key of its own; the admin key stands in for "another key" too.
	_, bSecret, err := newKeyFor(t, f)
	if err != nil {
		t.Fatal(err)
	}
	b := api.NewClient(f.url, bSecret)
	if _, ok := list(b)[ref]; ok {
		t.Fatalf("b sees a's snapshot image")
	}
	for _, img := range []string{ref, id, strings.TrimPrefix(id, "sha256:")} {
		status, body := call(t, f.url, "POST", "/v1/sandboxes", bSecret, fmt.Sprintf(`{"image":%q}`, img))
		if status != 400 {
			t.Fatalf("b creating from %s: %d %s", img, status, body)
		}
		if e := envelope(t, body); !strings.Contains(e.Message, "not available") {
			t.Fatalf("b creating from %s: %+v", img, e)
		}
	}
	// a may still use its own image by name.
	own := mustCreateWith(t, a, api.CreateSandboxRequest{Image: ref})
	if got := mustShell(t, a, own.ID, "cat /root/f"); got != "mine\n" {
		t.Fatalf("a's own image: %q", got)
	}
	var page api.SandboxList
	status, body := call(t, f.url, "GET", "/v1/sandboxes", bSecret, "")
	if status != 200 || json.Unmarshal(body, &page) != nil || len(page.Sandboxes) != 0 {
		t.Fatalf("b's list: %d %s", status, body)
	}
}

func newKeyFor(t *testing.T, f *fixture) (api.CreatedKey, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	k, err := api.NewClient(f.url, f.admin).CreateKey(ctx, api.CreateKeyRequest{Name: "other"})
	return k, k.Secret, err
}

// TestExecOutputIsBoundedAndBinarySafe: binary output comes back whole and
// at most 4/3 of its size on the wire, and a request's buffered output never
// exceeds what a key may hold of the server's output budget (half of it),
// whatever cap it asks for.
func TestExecOutputIsBoundedAndBinarySafe(t *testing.T) {
	t.Parallel()
	f := newFullFixture(t, Config{Bounds: bounds.Config{OutputBytes: 18 << 20}})
	ctx := context.Background()
	sb := mustCreate(t, f.a)
	const n = 3_000_000
	shell := fmt.Sprintf("head -c %d /dev/zero; head -c %d /dev/urandom >&2", n, n)
	status, body := call(t, f.url, "POST", "/v1/sandboxes/"+sb.ID+"/exec", f.user,
		fmt.Sprintf(`{"shell":%q,"max_output_bytes":4194304}`, shell))
	if status != 200 {
		t.Fatalf("exec: %d %s", status, body)
	}
	if limit := 2*n*4/3 + 1024; len(body) > limit {
		t.Fatalf("%d bytes of output came back as %d bytes of JSON (more than %d)", 2*n, len(body), limit)
	}
	res, err := f.a.Exec(ctx, sb.ID, api.ExecRequest{Shell: shell, MaxOutputBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Stdout != strings.Repeat("\x00", n) || len(res.Stderr) != n || res.Truncated {
		t.Fatalf("stdout %d bytes (all NUL: %v), stderr %d, truncated %v", len(res.Stdout),
			res.Stdout == strings.Repeat("\x00", n), len(res.Stderr), res.Truncated)
	}
	// The streamed form is binary-safe too.
	var out, errb strings.Builder
	if _, err := f.a.ExecStream(ctx, sb.ID, api.ExecRequest{Shell: "printf 'a\\000\\377b'; printf 'text' >&2"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\x00\xffb" || errb.String() != "text" {
		t.Fatalf("streamed: %q %q", out.String(), errb.String())
	}
	// Asking for 64 MiB of each stream gets what the key's 9 MiB holds.
	res, err = f.a.Exec(ctx, sb.ID, api.ExecRequest{
		Shell: "head -c 67108864 /dev/zero; head -c 67108864 /dev/zero >&2", MaxOutputBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(res.Stdout) + len(res.Stderr); got > 9<<20 || !res.Truncated {
		t.Fatalf("64 MiB twice under a 9 MiB budget: %d bytes, truncated %v", got, res.Truncated)
	}
	// And the budget is whole again afterwards.
	res, err = f.a.Exec(ctx, sb.ID, api.ExecRequest{Shell: shell, MaxOutputBytes: 4 << 20})
	if err != nil || res.Truncated || len(res.Stdout) != n {
		t.Fatalf("after a truncated answer: %d bytes, truncated %v, %v", len(res.Stdout), res.Truncated, err)
	}
}

// dockerInspect returns `docker inspect` of a container or image, decoded.
func dockerInspect(t *testing.T, ref string) map[string]any {
	t.Helper()
	out, err := exec.Command("docker", "inspect", ref).Output()
	if err != nil {
		t.Fatalf("docker inspect %s: %v", ref, err)
	}
	var v []map[string]any
	if err := json.Unmarshal(out, &v); err != nil || len(v) != 1 {
		t.Fatalf("docker inspect %s: %v", ref, err)
	}
	return v[0]
}

// containerOf is the ID of the container behind a sandbox.
func containerOf(t *testing.T, sandboxID string) string {
	t.Helper()
	out, err := exec.Command("docker", "ps", "-aq", "--no-trunc", "--filter", "label=bothy.id="+sandboxID).Output()
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" || strings.Contains(id, "\n") {
		t.Fatalf("the container of %s: %q %v", sandboxID, out, err)
	}
	return id
}

// untar reads the entries of a tar into a map.
func untar(t *testing.T, b []byte) (names []string, files map[string][]byte) {
	t.Helper()
	files = map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, files
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		names = append(names, h.Name)
		files[h.Name] = body
	}
}

// TestNoSecretInEnvironmentOrExport: the agent's token is in no container's
// environment, no commit, no export; a non-root user in the sandbox cannot
// read it; and an export carries none of the sandbox's environment.
func TestNoSecretInEnvironmentOrExport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreateWith(t, c, api.CreateSandboxRequest{Env: map[string]string{"MY_SECRET": "hunter2"}})
	if got := mustShell(t, c, sb.ID, "tr '\\0' '\\n' < /proc/1/environ | grep -c BOTHY_TOKEN; env | grep -c BOTHY_TOKEN; true"); got != "0\n0\n" {
		t.Fatalf("the token is in the environment: %q", got)
	}
	// Nor does the mount table name the host's data directory.
	if got := mustShell(t, c, sb.ID, "cat /proc/self/mountinfo"); strings.Contains(got, filepath.Base(f.data)) ||
		!strings.Contains(got, "/sb-") || !strings.Contains(got, "bothy-run") {
		t.Fatalf("the mount table: %s", got)
	}
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "cat /.bothy/run/token", User: "1000"})
	if err != nil || res.ExitCode == 0 || res.Stdout != "" {
		t.Fatalf("a non-root user read the token: %+v %v", res, err)
	}
	inspect, _ := json.Marshal(dockerInspect(t, containerOf(t, sb.ID)))
	if strings.Contains(string(inspect), "BOTHY_TOKEN") {
		t.Fatalf("docker inspect shows the token")
	}
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DeleteSnapshot(context.Background(), snap.ID) })
	var archive bytes.Buffer
	if _, err := c.ExportSnapshot(ctx, snap.ID, &archive); err != nil {
		t.Fatal(err)
	}
	_, files := untar(t, archive.Bytes())
	config := string(files["config.json"])
	for _, leak := range []string{"BOTHY", "MY_SECRET", "hunter2", "bothy-agent"} {
		if strings.Contains(config, leak) {
			t.Fatalf("the export's config names %q: %s", leak, config)
		}
	}
}

// TestImportKeepsOnlyTheLayers: an archive whose config asks for a health
// check, volumes, an environment and labels (sizes and digests made
// consistent) imports as the layers alone; a sandbox restored from it runs
// with bothy's configuration.
func TestImportKeepsOnlyTheLayers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	_, snap := mustSnapshot(t, c, "echo kept > /root/f", api.CreateSnapshotRequest{})
	var archive bytes.Buffer
	if _, err := c.ExportSnapshot(ctx, snap.ID, &archive); err != nil {
		t.Fatal(err)
	}
	names, files := untar(t, archive.Bytes())
	var config map[string]any
	if err := json.Unmarshal(files["config.json"], &config); err != nil {
		t.Fatal(err)
	}
	volumes := map[string]any{}
	for i := range 20 {
		volumes[fmt.Sprintf("/vol%d", i)] = map[string]any{}
	}
	config["config"] = map[string]any{
		"Env":         []string{"LD_PRELOAD=/root/evil.so", "PATH=/bin"},
		"Volumes":     volumes,
		"Healthcheck": map[string]any{"Test": []string{"CMD", "/bin/sh", "-c", "touch /root/health-ran"}, "Interval": 100000000},
		"Labels":      map[string]string{"bothy.owner": "someone-else", "bothy.kind": "image"},
		"Entrypoint":  []string{"/bin/sh"},
		"StopSignal":  "SIGKILL",
	}
	crafted, _ := json.Marshal(config)
	var manifest map[string]any
	if err := json.Unmarshal(files["bothy-snapshot.json"], &manifest); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(crafted)
	manifest["config"] = map[string]any{"file": "config.json", "size": len(crafted), "sha256": hex.EncodeToString(sum[:])}
	files["config.json"] = crafted
	files["bothy-snapshot.json"], _ = json.Marshal(manifest)
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for _, name := range names {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[name]))})
		tw.Write(files[name])
	}
	tw.Close()
	imported, err := c.ImportSnapshot(ctx, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.DeleteSnapshot(context.Background(), imported.ID) })
	img := dockerInspect(t, "bothy/snapshot:"+imported.ID)
	cfg, _ := img["Config"].(map[string]any)
	if cfg["Healthcheck"] != nil || cfg["Volumes"] != nil || cfg["Entrypoint"] != nil || cfg["StopSignal"] != nil {
		t.Fatalf("the imported image kept the archive's config: %v", cfg)
	}
	if labels, _ := cfg["Labels"].(map[string]any); labels["bothy.owner"] == "someone-else" || labels["bothy.kind"] != "snapshot" {
		t.Fatalf("imported image labels: %v", labels)
	}
	clone := mustCreateWith(t, c, api.CreateSandboxRequest{Snapshot: imported.ID})
	if got := mustShell(t, c, clone.ID, "cat /root/f; env | grep -c LD_PRELOAD; true"); got != "kept\n0\n" {
		t.Fatalf("restored sandbox: %q", got)
	}
	ctr := dockerInspect(t, containerOf(t, clone.ID))
	// bothy's own mounts only: the agent's two and the run directory's
	// /etc files, all read-only; none of the archive's 20 volumes.
	own := map[string]bool{"/.bothy/run": true, "/.bothy/bin/bothy-agent": true, "/etc/hosts": true, "/etc/hostname": true, "/etc/resolv.conf": true}
	mounts, _ := ctr["Mounts"].([]any)
	for _, m := range mounts {
		m, _ := m.(map[string]any)
		if dst, _ := m["Destination"].(string); !own[dst] || m["RW"] != false || m["Type"] != "bind" {
			t.Fatalf("the restored container has a mount not bothy's own: %v (all: %v)", m, mounts)
		}
	}
	if state, _ := ctr["State"].(map[string]any); state["Health"] != nil {
		t.Fatalf("the restored container has a health check: %v", state["Health"])
	}
}

// TestQuotasPerKey: an admin sets a key's quota; creates, starts and
// snapshots past it are 429 quota_exceeded naming the quota, and change
// nothing; the server's defaults hold for keys without their own.
func TestQuotasPerKey(t *testing.T) {
	t.Parallel()
	f := newFullFixture(t, Config{})
	ctx := context.Background()
	f.keys.SetDefaultQuota(supervisor.Quota{Sandboxes: 50})
	t.Cleanup(func() { f.keys.SetDefaultQuota(supervisor.Quota{}) })
	k, err := f.adminC.SetKeyQuota(ctx, f.bID, api.Quota{Sandboxes: 2, Running: 1, MemoryMB: 300, Snapshots: 1})
	if err != nil {
		t.Fatal(err)
	}
	if k.Quota.Sandboxes != 2 || k.QuotaSet.Running != 1 || k.Quota.MemoryMB != 300 {
		t.Fatalf("key after PATCH: %+v", k)
	}
	if status, body := call(t, f.url, "PATCH", "/v1/keys/"+f.bID, f.user, `{"quota":{"sandboxes":1000}}`); status != 403 {
		t.Fatalf("a non-admin set a quota: %d %s", status, body)
	}
	if status, body := call(t, f.url, "PATCH", "/v1/keys/"+f.bID, f.admin, `{"quota":{"sandboxes":-1}}`); status != 400 {
		t.Fatalf("a negative quota: %d %s", status, body)
	}
	refused := func(what string, err error, quota string) {
		t.Helper()
		var e *api.Error
		if !errors.As(err, &e) || e.Status != 429 || e.Code != api.CodeQuotaExceeded || !strings.Contains(e.Message, quota) {
			t.Fatalf("%s: %v, want 429 quota_exceeded naming %q", what, err, quota)
		}
	}
	one := mustCreateWith(t, f.b, api.CreateSandboxRequest{MemoryMB: 256})
	_, err = f.b.CreateSandbox(ctx, api.CreateSandboxRequest{MemoryMB: 32}, "")
	refused("a second running sandbox", err, "running")
	if _, err := f.b.StopSandbox(ctx, one.ID); err != nil {
		t.Fatal(err)
	}
	_, err = f.b.CreateSandbox(ctx, api.CreateSandboxRequest{MemoryMB: 512}, "")
	refused("512 MiB with 300 allowed", err, "memory_mb")
	two := mustCreateWith(t, f.b, api.CreateSandboxRequest{MemoryMB: 64})
	_, err = f.b.CreateSandbox(ctx, api.CreateSandboxRequest{MemoryMB: 32}, "")
	refused("a third sandbox", err, "sandboxes")
	_, err = f.b.StartSandbox(ctx, one.ID)
	refused("starting a second", err, "running")
	// A data-plane call does not wake it past the quota either.
	_, err = f.b.Exec(ctx, one.ID, api.ExecRequest{Shell: "true"})
	refused("waking a second by exec", err, "running")
	if sb, _ := f.b.GetSandbox(ctx, one.ID); sb.State != api.StateStopped {
		t.Fatalf("the refused start left %s", sb.State)
	}
	if _, err := f.b.CreateSnapshot(ctx, two.ID, api.CreateSnapshotRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = f.b.CreateSnapshot(ctx, two.ID, api.CreateSnapshotRequest{})
	refused("a second snapshot", err, "snapshots")
	list, _ := f.b.ListSandboxes(ctx, api.ListOptions{})
	snaps, _ := f.b.ListSnapshots(ctx, "")
	if len(list.Sandboxes) != 2 || len(snaps.Snapshots) != 1 {
		t.Fatalf("after the refusals: %d sandboxes, %d snapshots", len(list.Sandboxes), len(snaps.Snapshots))
	}
	for _, sn := range snaps.Snapshots {
		_ = f.b.DeleteSnapshot(ctx, sn.ID)
	}
	// Key a has no quota of its own: the server's default (50 sandboxes)
	// is what it is held to.
	keys, err := f.adminC.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys.Keys {
		if key.ID == f.aID && (key.Quota.Sandboxes != 50 || key.QuotaSet.Sandboxes != 0) {
			t.Fatalf("key a: %+v", key)
		}
	}
}
