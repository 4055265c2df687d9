package server

// The server's and the E2B front door's own logic on the in-memory engine,
// in `make test-unit`: a fake container's "process" is a sandbox agent
// served in this test process, which dials the sandbox's socket as the real
// one does from inside its container.

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/compat/e2b"
	"github.com/bothy/bothy/fsapi"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/mcp"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/ports"
	"github.com/bothy/bothy/process"
	"github.com/bothy/bothy/shell"
	"github.com/bothy/bothy/supervisor"
)

// fakeImage is the one image of the fake engine.
const fakeImage = "bothy/busybox"

// newFakeFixture serves the real router, with the E2B and MCP front doors,
// over a real orchestrator on the fake engine; images, snapshots and runs
// are not served.
func newFakeFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	data, log := testenv.DataDir(t), testenv.Logger(t)
	sq := testenv.DB(t, data)
	keys, err := supervisor.NewKeys(ctx, sq)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := keys.Bootstrap(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	_, user, err := keys.Create(ctx, "user", false)
	if err != nil {
		t.Fatal(err)
	}
	e := testenv.FakeEngine(t, fakeImage)
	bin := filepath.Join(data, "agent-binary")
	if err := os.WriteFile(bin, []byte("not a real agent: fake containers run none"), 0o755); err != nil {
		t.Fatal(err)
	}
	o, err := orchestrator.New(ctx, orchestrator.Config{
		Instance: testenv.Instance("fakesrv"), DataDir: data, AgentBinary: bin,
		Network: "bothy-fake", DefaultImage: fakeImage,
	}, e, testenv.FakeImages{Image: fakeImage}, sq, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Run(ctx); err != nil {
		t.Fatal(err)
	}
	files, procs, terms := fsapi.New(o, nil, fsapi.Limits{MaxFileBytes: 16 << 20}), process.New(o), shell.New(o, log)
	compat, err := e2b.New(ctx, e2b.Deps{Orchestrator: o, Files: files, Processes: procs, Shell: terms, Keys: keys, DB: sq, Log: log,
		DefaultImage: fakeImage})
	if err != nil {
		t.Fatal(err)
	}
	portSvc, err := ports.New(ctx, o, sq, log)
	if err != nil {
		t.Fatal(err)
	}
	tickets := supervisor.NewTickets()
	srv := New(Config{BodyLimit: 64 << 10, MaxFileBytes: 16 << 20, PreviewDomain: previewDomain}, Deps{
		Orchestrator: o, Keys: keys, Tickets: tickets, Files: files, Shell: terms, Processes: procs, Ports: portSvc,
		DB: sq, Log: log, Mounts: append(compat.Mounts(), mcp.Mounts(mcp.Deps{Orchestrator: o, Files: files, Processes: procs, Ports: portSvc, Keys: keys})...),
	})
	hs := httptest.NewServer(validated(t, srv.Handler()))
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
		o.Close()
		cs, _ := e.List(context.Background(), nil)
		for _, c := range cs {
			_ = e.Remove(context.Background(), c.ID)
		}
	})
	return &fixture{url: hs.URL, data: data, admin: admin, user: user, orch: o, tickets: tickets}
}

// TestE2BFrontDoorOnTheFakeEngine: E2B's control and data planes through
// the server's one route table, on a sandbox made through REST (E2B's own
// create runs as the image's "user", which the host this fake runs its
// agents on lacks; the E2B SDK test covers it on Docker): connect gives the
// sandbox's data-plane token, which works where another does not;
// stopped through REST, connect wakes it (201, then 200); deleted through
// REST, its token goes with it, and its data plane answers as E2B's proxy
// does for a sandbox that is gone.
func TestE2BFrontDoorOnTheFakeEngine(t *testing.T) {
	t.Parallel()
	f := newFakeFixture(t)
	made, err := api.NewClient(f.url, f.user).CreateSandbox(context.Background(), api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	var sb struct {
		SandboxID       string `json:"sandboxID"`
		EnvdAccessToken string `json:"envdAccessToken"`
	}
	status, body := f.call(t, "POST", "/sandboxes/"+made.ID+"/connect", "", `{"timeout":300}`, "X-API-Key", f.user)
	if status != 200 || json.Unmarshal(body, &sb) != nil || sb.SandboxID != made.ID || sb.EnvdAccessToken == "" {
		t.Fatalf("E2B connect: %d %s", status, body)
	}
	health := func(token string) int {
		t.Helper()
		status, _ := f.call(t, "GET", "/health", "", "", "E2b-Sandbox-Id", sb.SandboxID, "X-Access-Token", token)
		return status
	}
	if got := health(sb.EnvdAccessToken); got != 204 {
		t.Fatalf("data plane with the token: %d", got)
	}
	if got := health(sb.EnvdAccessToken + "x"); got != 401 {
		t.Fatalf("data plane with another token: %d", got)
	}
	if status, body := f.call(t, "POST", "/v1/sandboxes/"+sb.SandboxID+"/stop", f.user, ""); status != 200 {
		t.Fatalf("REST stop: %d %s", status, body)
	}
	if status, body := f.call(t, "POST", "/sandboxes/"+sb.SandboxID+"/connect", "", `{"timeout":300}`, "X-API-Key", f.user); status != 201 {
		t.Fatalf("E2B connect to a stopped sandbox: %d %s, want 201", status, body)
	}
	if status, body := f.call(t, "POST", "/sandboxes/"+sb.SandboxID+"/connect", "", `{"timeout":300}`, "X-API-Key", f.user); status != 200 {
		t.Fatalf("E2B connect to a running sandbox: %d %s, want 200", status, body)
	}
	if status, body := f.call(t, "DELETE", "/v1/sandboxes/"+sb.SandboxID, f.user, ""); status != 204 {
		t.Fatalf("REST delete: %d %s", status, body)
	}
	var tokens int
	if err := testenv.DB(t, f.data).QueryRow(`SELECT COUNT(*) FROM e2b_tokens`).Scan(&tokens); err != nil || tokens != 0 {
		t.Fatalf("tokens left after the delete: %d %v", tokens, err)
	}
	if got := health(sb.EnvdAccessToken); got != 502 {
		t.Fatalf("data plane of a deleted sandbox: %d, want 502", got)
	}
}

// onBothEngines runs check on a server over the real engine and, in make
// test-unit too, over the fake one: the server's logic does not depend on
// which engine runs the sandboxes.
func onBothEngines(t *testing.T, check func(t *testing.T, f *fixture)) {
	t.Parallel()
	t.Run("docker", func(t *testing.T) {
		t.Parallel()
		check(t, newFixture(t))
	})
	t.Run("fake", func(t *testing.T) {
		t.Parallel()
		check(t, newFakeFixture(t))
	})
}
