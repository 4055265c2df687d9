package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
)

// onCluster is a bothyd with its sandboxes on the test cluster.
type onCluster struct {
	*daemon
	// start starts it again (after a kill) on the same data.
	start func() *daemon
	// containers lists what it made on the cluster.
	containers func() []runtime.Container
}

// startOnCluster starts bothyd with its sandboxes on the test cluster, in a
// namespace of the test's own (deleted at its end).
func startOnCluster(t *testing.T, key string, env ...string) onCluster {
	t.Helper()
	testenv.Docker(t)
	k := testenv.Kube(t, "")
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--runtime", "kubernetes", "--kubeconfig", os.Getenv("BOTHY_KUBECONFIG"),
		"--kube-namespace", k.Namespace(), "--registry", os.Getenv("BOTHY_KUBE_REGISTRY")}
	env = append([]string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_DEFAULT_IMAGE=bothy/busybox"}, env...)
	d := startDaemonArgs(t, listen, data, args, env...)
	instance, err := readInstance(data)
	if err != nil {
		t.Fatal(err)
	}
	start := func() *daemon { return startDaemonArgs(t, listen, data, args, env...) }
	return onCluster{daemon: d, start: start, containers: func() []runtime.Container {
		t.Helper()
		cs, err := k.List(context.Background(), map[string]string{runtime.LabelInstance: instance})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}}
}

// TestKubeUserJourney walks the user's journey with sandboxes on the real
// cluster: create, exec, files, a terminal, a background process and its
// port, a restart of bothy, stop and start, delete; and it checks that
// the sandbox is an ordinary agent-sandbox Sandbox there.
func TestKubeUserJourney(t *testing.T) {
	const key = "e2e-kube-key-0123456789abcdef01"
	cl := startOnCluster(t, key)
	d, containers := cl.daemon, cl.containers
	ctx := context.Background()
	c := api.NewClient(d.url, key)

	out, errOut, code := bothy(t, d.url, key, "create", "--label", "suite=kube")
	if code != 0 {
		t.Fatalf("bothy create: %d %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	cs := containers()
	if len(cs) != 1 || cs[0].State != runtime.StateRunning || cs[0].Labels[runtime.LabelID] != id {
		t.Fatalf("on the cluster: %+v", cs)
	}

	if out, _, code := bothy(t, d.url, key, "exec", id, "--", "sh", "-c", "echo $((6*7)); hostname"); code != 0 || out != "42\n"+id+"\n" {
		t.Fatalf("exec: %d %q", code, out)
	}
	if _, _, code := bothy(t, d.url, key, "exec", id, "--", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	if _, errOut, code := bothy(t, d.url, key, "exec", id, "--timeout", "1s", "--", "sleep", "60"); code != 137 || !strings.Contains(errOut, "timed out after 1s") {
		t.Fatalf("exec past its --timeout: exit %d, %q", code, errOut)
	}
	// Root in the sandbox has today's capabilities, and none to change
	// the network.
	if out, _, _ := bothy(t, d.url, key, "exec", id, "--", "sh", "-c", "grep CapEff /proc/self/status; ip link set lo down; echo $?"); !strings.Contains(out, "00000000000004eb") || strings.HasSuffix(out, "\n0\n") {
		t.Fatalf("capabilities: %q", out)
	}

	// Files both ways.
	if _, err := c.WriteFile(ctx, id, "/root/note", strings.NewReader("kept\n"), api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, _, code := bothy(t, d.url, key, "cat", id+":/root/note"); code != 0 || out != "kept\n" {
		t.Fatalf("cat: %d %q", code, out)
	}

	// A terminal.
	term := startTerminal(t, d.url, key, 100, 30, "shell", id)
	term.tty.Write([]byte("stty size; echo $((7*6))x\r"))
	term.wait("30 100")
	term.wait("42x")
	term.tty.Write([]byte("exit 4\r"))
	if err := term.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("bothy shell: %v; screen %q", err, term.screen.String())
	}

	// A background process serving a port, reached through bothy.
	if _, err := c.Exec(ctx, id, api.ExecRequest{Shell: "mkdir -p /srv && echo hello from the cluster > /srv/index.html"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartProcess(ctx, id, api.StartProcessRequest{Cmd: []string{"httpd", "-f", "-p", "8000", "-h", "/srv"}, Tag: "web"}); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitPort(ctx, id, 8000, time.Minute); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, c.PortURL(id, 8000, "/index.html"), nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if code, body := do(t, http.DefaultClient, req); code != 200 || body != "hello from the cluster\n" {
		t.Fatalf("through the port proxy: %d %q", code, body)
	}

	// A pod cannot be paused: said so, and nothing changes.
	if _, err := c.PauseSandbox(ctx, id); err == nil || !strings.Contains(err.Error(), "not_implemented") {
		t.Fatalf("pause: %v, want not_implemented", err)
	}

	// bothy killed and started again finds its sandbox, running, and
	// makes no second one.
	d.kill()
	d = cl.start()
	c = api.NewClient(d.url, key)
	if out, _, _ := bothy(t, d.url, key, "ls"); !strings.Contains(out, id) || !strings.Contains(out, "running") {
		t.Fatalf("after restart, ls: %s", out)
	}
	if out, e, code := bothy(t, d.url, key, "exec", id, "--", "cat", "/root/note"); code != 0 || out != "kept\n" {
		t.Fatalf("after restart: %d %q %s", code, out, e)
	}
	if cs := containers(); len(cs) != 1 {
		t.Fatalf("after restart, on the cluster: %+v", cs)
	}

	// Stop and start.
	if _, e, code := bothy(t, d.url, key, "stop", id); code != 0 {
		t.Fatalf("stop: %s", e)
	}
	if cs := containers(); len(cs) != 1 || cs[0].State != runtime.StateExited {
		t.Fatalf("stopped, on the cluster: %+v", cs)
	}
	if _, e, code := bothy(t, d.url, key, "start", id); code != 0 {
		t.Fatalf("start: %s", e)
	}
	if out, _, code := bothy(t, d.url, key, "exec", id, "--", "echo", "back"); code != 0 || out != "back\n" {
		t.Fatalf("after start: %d %q", code, out)
	}

	if _, e, code := bothy(t, d.url, key, "rm", id); code != 0 {
		t.Fatalf("rm: %s", e)
	}
	if cs := containers(); len(cs) != 0 {
		t.Fatalf("after rm, on the cluster: %+v", cs)
	}
}
