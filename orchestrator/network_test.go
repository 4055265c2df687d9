package orchestrator

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/internal/testenv"
)

// testHost is a host of the test's own on a private address: a network
// namespace joined to the host by a veth pair, serving HTTP.
type testHost struct{ addr string }

func newTestHost(t *testing.T) testHost {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip (iproute2) is needed: %v", err)
	}
	id := newID("", 3)
	ns, hostIf, nsIf := "btyt-"+id, "btyh"+id, "btyn"+id
	host, addr := "10.213.77.1", "10.213.77.2"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	// A namespace another run of this test left behind holds the address.
	if out, err := exec.Command("ip", "-o", "addr", "show", "to", host+"/32").Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if strings.HasPrefix(f, "btyh") {
				_ = exec.Command("ip", "link", "del", strings.TrimSuffix(f, ":")).Run()
			}
		}
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", nsIf)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	run("ip", "link", "set", nsIf, "netns", ns)
	run("ip", "addr", "add", host+"/24", "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	run("ip", "netns", "exec", ns, "ip", "addr", "add", addr+"/24", "dev", nsIf)
	run("ip", "netns", "exec", ns, "ip", "link", "set", nsIf, "up")
	run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	srv := exec.Command("ip", "netns", "exec", ns, "python3", "-m", "http.server", "8080", "--bind", addr)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	// Wait, bounded, for the server to answer from the host.
	deadline := time.Now().Add(30 * time.Second)
	for exec.Command("curl", "-s", "-o", "/dev/null", "--max-time", "1", fmt.Sprintf("http://%s:8080/", addr)).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the test host does not answer")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return testHost{addr: addr}
}

// TestPrivateRangesBlocked: a sandbox does not reach a host on a private
// address, while a sandbox on a network whose bothy allows that range
// does (so the route exists and only the rule stands between them).
func TestPrivateRangesBlocked(t *testing.T) {
	h := newTestHost(t)
	// busybox's nc, not its wget (which crashes in the static build); the
	// test host's Python server answers 200 to this.
	fetch := fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080 | grep -q '^HTTP/1.0 200' && echo reached || echo blocked`, h.addr)

	blocked := newFixture(t, nil)
	sb := blocked.create(t, "alice", CreateOptions{})
	if _, out := blocked.exec(t, "alice", sb.ID, fetch); strings.Contains(out, "reached") || !strings.Contains(out, "blocked") {
		t.Fatalf("a sandbox reached %s on a private address: %q", h.addr, out)
	}
	allowed := newFixture(t, func(c *Config) {
		c.Network, c.Bridge = testenv.Network("allow")
		c.AllowedRanges = []string{"10.213.77.0/24"}
	})
	sb2 := allowed.create(t, "alice", CreateOptions{})
	if _, out := allowed.exec(t, "alice", sb2.ID, fetch); !strings.Contains(out, "reached") {
		t.Fatalf("a sandbox allowed 10.213.77.0/24 did not reach %s: %q", h.addr, out)
	}
}
