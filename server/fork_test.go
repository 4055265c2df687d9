package server

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/bothy/bothy/api"
)

// TestFork: a fork makes independent sandboxes with the source's files,
// settings and environment, and the labels given; bad counts are 400s, and
// another key's sandbox cannot be forked.
func TestFork(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	src, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Env: map[string]string{"ROLE": "worker"}, MemoryMB: 256,
		Workdir: "/tmp", Labels: map[string]string{"kind": "source"}}, "")
	if err != nil {
		t.Fatal(err)
	}
	mustShell(t, c, src.ID, "mkdir -p /data && echo state-1 > /data/state")

	res, err := c.Fork(ctx, src.ID, api.ForkRequest{Count: 3, Labels: map[string]string{"kind": "fork"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Sandboxes) != 3 || res.Snapshot == "" {
		t.Fatalf("fork: %+v", res)
	}
	seen := map[string]bool{src.ID: true}
	for i, sb := range res.Sandboxes {
		if seen[sb.ID] || sb.State != api.StateRunning || sb.MemoryMB != 256 || sb.Labels["kind"] != "fork" || sb.Workdir != "/tmp" {
			t.Fatalf("fork %d: %+v", i, sb)
		}
		seen[sb.ID] = true
		if got := mustShell(t, c, sb.ID, `cat /data/state; echo "$ROLE $(pwd)"`); got != "state-1\nworker /tmp\n" {
			t.Fatalf("fork %d sees %q", i, got)
		}
	}
	// Independent: a change in one is in no other, nor in the source.
	mustShell(t, c, res.Sandboxes[0].ID, "echo mine > /data/state")
	for _, id := range []string{src.ID, res.Sandboxes[1].ID, res.Sandboxes[2].ID} {
		if got := mustShell(t, c, id, "cat /data/state"); got != "state-1\n" {
			t.Fatalf("%s sees %q after a fork changed its copy", id, got)
		}
	}

	for _, body := range []string{`{"count":0}`, `{"count":17}`, `{}`, `{"count":"3"}`, `{"count":1,"extra":true}`} {
		req, _ := http.NewRequest("POST", f.url+"/v1/sandboxes/"+src.ID+"/fork", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.user)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("fork %s: %d, want 400", body, resp.StatusCode)
		}
	}
	other := api.NewClient(f.url, f.admin)
	if _, err := other.Fork(ctx, src.ID, api.ForkRequest{Count: 1}); !api.IsNotFound(err) {
		t.Fatalf("another key's fork: %v", err)
	}
	list, err := c.ListSandboxes(ctx, api.ListOptions{})
	if err != nil || len(list.Sandboxes) != 4 {
		t.Fatalf("after the forks: %d sandboxes, %v", len(list.Sandboxes), err)
	}
}
