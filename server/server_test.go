package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/ports"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
	"github.com/bothy/bothy/shell"
	"github.com/bothy/bothy/snapshot"
	"github.com/bothy/bothy/supervisor"
)

type fixture struct {
	url         string
	data        string // the data directory
	admin, user string
	orch        *orchestrator.Orchestrator
	tickets     *supervisor.Tickets
}

// base is what every server fixture needs: the real engine, a data
// directory, a SQLite database, an image builder, and two keys.
type base struct {
	d           *docker.Docker
	data        string
	log         *slog.Logger
	sq          *sql.DB
	images      *images.Builder
	keys        *supervisor.Keys
	admin, user string
}

func newBase(t *testing.T) *base {
	t.Helper()
	ctx := context.Background()
	b := &base{d: testenv.Docker(t), data: testenv.DataDir(t), log: testenv.Logger(t)}
	b.sq, b.images = testenv.DB(t, b.data), images.New(b.d, testenv.Logger(t), "", filepath.Join(b.data, "build"))
	t.Cleanup(b.images.Close)
	var err error
	if b.keys, err = supervisor.NewKeys(ctx, b.sq); err != nil {
		t.Fatal(err)
	}
	if b.admin, err = b.keys.Bootstrap(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if _, b.user, err = b.keys.Create(ctx, "user", false); err != nil {
		t.Fatal(err)
	}
	return b
}

// serve serves srv from an httptest server until the test ends, then closes
// it, runs closeAll, and removes every container of instance.
func (b *base) serve(t *testing.T, srv *Server, instance string, closeAll func()) string {
	hs := httptest.NewServer(validated(t, srv.Handler()))
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		closeAll()
		cs, _ := b.d.List(context.Background(), map[string]string{runtime.LabelInstance: instance})
		for _, c := range cs {
			_ = b.d.Remove(context.Background(), c.ID)
		}
		// And the images it made: snapshots the test did not delete.
		imgs, _ := b.d.ImageList(context.Background())
		for _, img := range imgs {
			if img.Labels[runtime.LabelInstance] == instance {
				for _, tag := range img.Tags {
					_ = b.d.ImageRemove(context.Background(), tag)
				}
			}
		}
	})
	return hs.URL
}

// newFixture serves the real router, over a real orchestrator on the real
// engine, from an httptest server.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith is newFixture with its server's configuration changed by
// change.
func newFixtureWith(t *testing.T, change func(*Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	b := newBase(t)
	instance := "srvtest-" + filepath.Base(b.data)
	snaps, err := snapshot.New(ctx, snapshot.Config{Instance: instance, Scratch: filepath.Join(b.data, "tmp")}, b.sq, b.d, b.log)
	if err != nil {
		t.Fatal(err)
	}
	o, err := orchestrator.New(ctx, orchestrator.Config{
		Instance: instance, DataDir: b.data, AgentBinary: testenv.AgentBinary(t),
		Network: network, Bridge: bridge, DefaultImage: images.Busybox, Checkpoints: snaps,
	}, b.d, b.images, b.sq, b.log)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	tickets := supervisor.NewTickets()
	cfg := Config{BodyLimit: 64 << 10, MaxFileBytes: 16 << 20, PreviewDomain: previewDomain}
	if change != nil {
		change(&cfg)
	}
	srv := New(cfg, Deps{Orchestrator: o, Keys: b.keys, Tickets: tickets,
		Files: fsapi.New(o, snaps, fsapi.Limits{MaxFileBytes: 16 << 20}), Shell: shell.New(o, b.log), Processes: process.New(o), Ports: mustPorts(t, o, b),
		Images: b.images, Snapshots: snaps, DB: b.sq, Log: b.log})
	url := b.serve(t, srv, instance, o.Close)
	return &fixture{url: url, data: b.data, admin: b.admin, user: b.user, orch: o, tickets: tickets}
}

// call sends a raw request and returns its status and body.
func (f *fixture) call(t *testing.T, method, path, key, body string, hdr ...string) (int, []byte) {
	t.Helper()
	return call(t, f.url, method, path, key, body, hdr...)
}

// call sends a raw request to the server at base.
func call(t *testing.T, base, method, path, key, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func envelope(t *testing.T, b []byte) api.Error {
	t.Helper()
	var env api.ErrorEnvelope
	if err := json.Unmarshal(b, &env); err != nil || env.Error.Code == "" || env.Error.Message == "" || env.Error.RequestID == "" {
		t.Fatalf("not an error envelope: %s", b)
	}
	return env.Error
}

func TestBadInputGetsClear4xxAndChangesNothing(t *testing.T) {
	t.Parallel()
	checkBadInput(t, newFixture(t))
}

// TestBadInputOnTheFakeEngine is the same, in make test-unit.
func TestBadInputOnTheFakeEngine(t *testing.T) {
	t.Parallel()
	checkBadInput(t, newFakeFixture(t))
}

// checkBadInput sends f's server bad requests: each gets a clear 4xx in
// the error envelope, and no sandbox comes of any.
func checkBadInput(t *testing.T, f *fixture) {
	tests := []struct {
		name, method, path, key, body string
		status                        int
		code, mention                 string
	}{
		{"no key", "GET", "/v1/sandboxes", "", "", 401, api.CodeUnauthenticated, "Bearer"},
		{"wrong key", "GET", "/v1/sandboxes", "bothy_nope", "", 401, api.CodeUnauthenticated, "invalid"},
		{"malformed JSON", "POST", "/v1/sandboxes", f.user, `{"image":`, 400, api.CodeInvalidArgument, "malformed"},
		{"unknown field", "POST", "/v1/sandboxes", f.user, `{"imagee":"x"}`, 400, api.CodeInvalidArgument, "imagee"},
		{"wrong type", "POST", "/v1/sandboxes", f.user, `{"cpus":"two"}`, 400, api.CodeInvalidArgument, "cpus"},
		{"trailing data", "POST", "/v1/sandboxes", f.user, `{} {}`, 400, api.CodeInvalidArgument, "trailing"},
		{"negative cpus", "POST", "/v1/sandboxes", f.user, `{"cpus":-1}`, 400, api.CodeInvalidArgument, "cpus"},
		{"absurd memory", "POST", "/v1/sandboxes", f.user, `{"memory_mb":100000000}`, 400, api.CodeInvalidArgument, "memory_mb"},
		{"absurd pids", "POST", "/v1/sandboxes", f.user, `{"pids":99999999}`, 400, api.CodeInvalidArgument, "pids"},
		{"unknown image", "POST", "/v1/sandboxes", f.user, `{"image":"nosuch/image:v1"}`, 400, api.CodeInvalidArgument, "nosuch/image:v1"},
		{"bad network", "POST", "/v1/sandboxes", f.user, `{"network":"host"}`, 400, api.CodeInvalidArgument, "network"},
		{"kep as another user", "POST", "/v1/sandboxes", f.user, `{"kep":true,"user":"nobody"}`, 400, api.CodeInvalidArgument, "kep"},
		{"oversized body", "POST", "/v1/sandboxes", f.user, `{"labels":{"a":"` + strings.Repeat("x", 70<<10) + `"}}`, 413, api.CodeTooLarge, "too large"},
		{"not JSON", "POST", "/v1/sandboxes", f.user, "", 415, api.CodeUnsupportedMedia, "json"},
		{"bad state filter", "GET", "/v1/sandboxes?state=zombie", f.user, "", 400, api.CodeInvalidArgument, "state"},
		{"bad limit", "GET", "/v1/sandboxes?limit=-3", f.user, "", 400, api.CodeInvalidArgument, "limit"},
		{"missing sandbox", "GET", "/v1/sandboxes/sb-0000000000000000", f.user, "", 404, api.CodeNotFound, "sb-0000000000000000"},
		{"no route", "GET", "/v1/nothing", f.user, "", 404, api.CodeNotFound, "route"},
		{"admin only", "POST", "/v1/keys", f.user, `{"name":"x"}`, 403, api.CodeForbidden, "admin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.name == "not JSON" {
				hdr = []string{"Content-Type", "text/plain"}
				tc.body = "hello"
			}
			status, body := f.call(t, tc.method, tc.path, tc.key, tc.body, hdr...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			e := envelope(t, body)
			if e.Code != tc.code || !strings.Contains(strings.ToLower(e.Message), strings.ToLower(tc.mention)) {
				t.Fatalf("error %+v, want code %s mentioning %q", e, tc.code, tc.mention)
			}
		})
	}
	list, _, _ := f.orch.List(context.Background(), "", orchestrator.ListFilter{})
	c := api.NewClient(f.url, f.user)
	page, err := c.ListSandboxes(context.Background(), api.ListOptions{})
	if err != nil || len(page.Sandboxes) != 0 || len(list) != 0 {
		t.Fatalf("bad input made sandboxes: %v %d", err, len(page.Sandboxes))
	}
}

func TestSandboxOverHTTP(t *testing.T) {
	onBothEngines(t, checkSandboxOverHTTP)
}

func checkSandboxOverHTTP(t *testing.T, f *fixture) {
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Labels: map[string]string{"job": "t1"}, Env: map[string]string{"SECRET": "s3"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != api.StateRunning || sb.Labels["job"] != "t1" || len(sb.EnvKeys) != 1 {
		t.Fatalf("created %+v", sb)
	}
	// Another key gets 404 for it, on every route.
	other := api.NewClient(f.url, f.admin)
	if _, err := other.GetSandbox(ctx, sb.ID); !api.IsNotFound(err) {
		t.Fatalf("other key: %v", err)
	}
	if _, err := other.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"true"}}); !api.IsNotFound(err) {
		t.Fatalf("other key exec: %v", err)
	}
	if err := other.DeleteSandbox(ctx, sb.ID); !api.IsNotFound(err) {
		t.Fatalf("other key delete: %v", err)
	}

	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "echo $SECRET; echo err >&2; exit 4"})
	if err != nil || res.ExitCode != 4 || res.Stdout != "s3\n" || res.Stderr != "err\n" {
		t.Fatalf("exec: %+v %v", res, err)
	}
	res, err = c.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"cat"}, Stdin: "piped"})
	if err != nil || res.Stdout != "piped" {
		t.Fatalf("stdin: %+v %v", res, err)
	}
	res, err = c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "head -c 5000 /dev/zero", MaxOutputBytes: 100})
	if err != nil || len(res.Stdout) != 100 || !res.Truncated {
		t.Fatalf("cap: %d %v %v", len(res.Stdout), res.Truncated, err)
	}
	res, err = c.Exec(ctx, sb.ID, api.ExecRequest{Cmd: []string{"sleep", "5"}, TimeoutMs: 200})
	if err != nil || !res.TimedOut || res.ExitCode != 137 {
		t.Fatalf("timeout: %+v %v", res, err)
	}
	var out, errb bytes.Buffer
	res, err = c.ExecStream(ctx, sb.ID, api.ExecRequest{Shell: "for i in 1 2 3; do echo $i; done; echo e >&2"}, &out, &errb)
	if err != nil || res.ExitCode != 0 || out.String() != "1\n2\n3\n" || errb.String() != "e\n" {
		t.Fatalf("stream: %+v %v %q %q", res, err, out.String(), errb.String())
	}
	if _, err := c.Exec(ctx, sb.ID, api.ExecRequest{}); err == nil {
		t.Fatal("exec without a command accepted")
	}

	// Idempotency-Key replays the first create.
	a, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "same")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "same")
	if err != nil || b.ID != a.ID {
		t.Fatalf("replay: %v %s %s", err, a.ID, b.ID)
	}

	page, err := c.ListSandboxes(ctx, api.ListOptions{Labels: map[string]string{"job": "t1"}})
	if err != nil || len(page.Sandboxes) != 1 || page.Sandboxes[0].ID != sb.ID {
		t.Fatalf("list by label: %v %+v", err, page)
	}
	page, err = c.ListSandboxes(ctx, api.ListOptions{Limit: 1})
	if err != nil || len(page.Sandboxes) != 1 || page.NextCursor == "" {
		t.Fatalf("page 1: %v %+v", err, page)
	}
	page2, err := c.ListSandboxes(ctx, api.ListOptions{Limit: 1, Cursor: page.NextCursor})
	if err != nil || len(page2.Sandboxes) != 1 || page2.Sandboxes[0].ID == page.Sandboxes[0].ID {
		t.Fatalf("page 2: %v %+v", err, page2)
	}

	ttl := int64(3600)
	up, err := c.UpdateSandbox(ctx, sb.ID, api.UpdateSandboxRequest{TTLS: &ttl})
	if err != nil || up.TTLS != 3600 || up.ExpiresAt == nil {
		t.Fatalf("update: %v %+v", err, up)
	}
	if st, err := c.StopSandbox(ctx, sb.ID); err != nil || st.State != api.StateStopped {
		t.Fatalf("stop: %v %+v", err, st)
	}
	if st, err := c.StartSandbox(ctx, sb.ID); err != nil || st.State != api.StateRunning {
		t.Fatalf("start: %v %+v", err, st)
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSandbox(ctx, sb.ID); !api.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestKeysAndImagesOverHTTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	admin := api.NewClient(f.url, f.admin)
	k, err := admin.CreateKey(ctx, api.CreateKeyRequest{Name: "ci"})
	if err != nil || !strings.HasPrefix(k.Secret, "bothy_") {
		t.Fatalf("create key: %v %+v", err, k)
	}
	ci := api.NewClient(f.url, k.Secret)
	if _, err := ci.ListSandboxes(ctx, api.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := admin.RevokeKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	var e *api.Error
	if _, err := ci.ListSandboxes(ctx, api.ListOptions{}); err == nil || !errors.As(err, &e) || e.Status != 401 {
		t.Fatalf("revoked key: %v", err)
	}
	// Without force, an image whose recipe is unchanged is not rebuilt (a
	// forced rebuild would pull the image from under the other tests).
	img, err := admin.BuildImage(ctx, "bothy/busybox", false, nil)
	if err != nil || img.Name != images.Busybox || !img.Builtin {
		t.Fatalf("build: %v %+v", err, img)
	}
	imgs, err := admin.ListImages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, img := range imgs.Images {
		found = found || (img.Name == images.Busybox && img.Builtin)
	}
	if !found || len(imgs.Buildable) < 2 {
		t.Fatalf("images: %+v", imgs)
	}
	status, body := f.call(t, "POST", "/v1/images", f.admin, `{"name":"ubuntu"}`)
	if status != 400 || envelope(t, body).Code != api.CodeInvalidArgument {
		t.Fatalf("build unknown: %d %s", status, body)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	r, err := api.NewClient(f.url, "").Ready(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Engine.Version == "" {
		t.Fatalf("readyz: %+v", r)
	}
	t.Logf("readyz: %+v", r)
}

// mustPorts is the ports service over o, on the fixture's database.
func mustPorts(t *testing.T, o *orchestrator.Orchestrator, b *base) *ports.Service {
	t.Helper()
	p, err := ports.New(context.Background(), o, b.sq, b.log)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
