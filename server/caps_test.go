package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
	"github.com/bothy/bothy/orchestrator"
)

// TestCapsAnswer429: requests in flight are capped per key, per sandbox
// (whoever sends them) and per public port without a key, on every front
// door; past a cap the answer is a 429 error envelope at once, other keys
// and other sandboxes are served meanwhile, and the caps are given back
// when the requests end.
func TestCapsAnswer429(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, func(c *Config) {
		c.Bounds = bounds.Config{PerKey: 3, PerSandbox: 2, PerPort: 1}
	})
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)

	// Each sandbox runs a server that takes requests and never answers;
	// every connection it takes leaves a mark.
	hang := "#!/bin/sh\ntouch /tmp/conn.$$\nexec cat >/dev/null\n"
	a, b := mustCreate(t, c), mustCreate(t, c)
	for _, sb := range []api.Sandbox{a, b} {
		if _, err := c.WriteFile(ctx, sb.ID, "/hang.sh", strings.NewReader(hang), api.WriteOptions{Mode: "0755"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.StartProcess(ctx, sb.ID, api.StartProcessRequest{Shell: "exec nc -ll -p 8000 -e /hang.sh"}); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitPort(ctx, sb.ID, 8000, time.Minute); err != nil {
			t.Fatal(err)
		}
		// WaitPort's own probe leaves no mark: it only dials. Start clean.
		if _, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "rm -f /tmp/conn.*"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ExposePort(ctx, a.ID, api.ExposePortRequest{Port: 8000, Public: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExposePort(ctx, b.ID, api.ExposePortRequest{Port: 8000}); err != nil {
		t.Fatal(err)
	}
	owner, err := f.orch.OwnerOf(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	// marks counts the connections a sandbox's server took, through the
	// orchestrator (under no cap of the server's).
	marks := func(id string) int {
		var out bytes.Buffer
		if _, err := f.orch.Exec(ctx, owner, id, orchestrator.ExecOptions{Shell: "ls /tmp | grep -c '^conn' || true"}, nil, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(out.String()))
		return n
	}

	// hold sends a request that hangs until the test ends, and waits until
	// the sandbox's server has it (so it holds its caps).
	hctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	held := map[string]int{}
	hold := func(sb, host, path, key string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(hctx, http.MethodGet, f.url+path, nil)
		if host != "" {
			req.Host = host
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		held[sb]++
		deadline := time.Now().Add(time.Minute)
		for marks(sb) < held[sb] {
			if time.Now().After(deadline) {
				t.Fatalf("request %d to %s never reached its server", held[sb], sb)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	busy := func(what, method, host, path, key string) {
		t.Helper()
		req, _ := http.NewRequest(method, f.url+path, nil)
		if host != "" {
			req.Host = host
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Fatalf("%s: %d %s, want 429", what, resp.StatusCode, body)
		}
		if e := envelope(t, body); e.Code == "" {
			t.Fatalf("%s: %s", what, body)
		}
	}
	preview := func(id string) string { return "8000-" + id + "." + previewDomain }
	portPath := func(id string) string { return fmt.Sprintf("/v1/sandboxes/%s/ports/8000/", id) }

	// Per public port without a key: one.
	hold(a.ID, preview(a.ID), "/", "")
	busy("a second anonymous request to the port", http.MethodGet, preview(a.ID), "/", "")
	// Per sandbox, whoever sends them: two.
	hold(a.ID, "", portPath(a.ID), f.user)
	busy("a third request to the sandbox", http.MethodGet, "", "/v1/sandboxes/"+a.ID, f.user)
	busy("another key's request to the sandbox", http.MethodGet, "", "/v1/sandboxes/"+a.ID+"/files?path=/", f.admin)
	// Per key: three (the anonymous one is nobody's).
	hold(b.ID, "", portPath(b.ID), f.user)
	hold(b.ID, "", portPath(b.ID), f.user)
	busy("a fourth request of the key", http.MethodGet, "", "/v1/sandboxes", f.user)
	// Another key is served meanwhile.
	if status, body := f.call(t, http.MethodGet, "/v1/sandboxes", f.admin, ""); status != 200 {
		t.Fatalf("another key: %d %s", status, body)
	}

	// The caps are given back when the requests end.
	stop()
	wg.Wait()
	deadline := time.Now().Add(time.Minute)
	for {
		status, _ := f.call(t, http.MethodGet, "/v1/sandboxes/"+a.ID, f.user, "")
		list, _ := f.call(t, http.MethodGet, "/v1/sandboxes", f.user, "")
		if status == 200 && list == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caps not given back: %d %d", status, list)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
