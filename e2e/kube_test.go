package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/agent-sandbox/clients/go/sandbox"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/kubernetes"
)

// onCluster is a bothyd with its sandboxes on the test cluster.
type onCluster struct {
	*daemon
	// start starts it again (after a kill) on the same data.
	start func() *daemon
	// containers lists what it made on the cluster.
	containers func() []runtime.Container
	// namespace holds it there.
	namespace string
}

// startOnCluster starts bothyd with its sandboxes on the test cluster, in a
// namespace of the test's own (deleted at its end).
func startOnCluster(t *testing.T, key string, env ...string) onCluster {
	t.Helper()
	testenv.Docker(t)
	k := testenv.Kube(t, kubernetes.Config{})
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := []string{"--runtime", "kubernetes", "--kubeconfig", os.Getenv("BOTHY_KUBECONFIG"),
		"--kube-namespace", k.Namespace(), "--registry", testenv.KubeRegistry(t)}
	env = append([]string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_DEFAULT_IMAGE=bothy/busybox"}, env...)
	d := startDaemonArgs(t, listen, data, args, env...)
	instance, err := readInstance(data)
	if err != nil {
		t.Fatal(err)
	}
	start := func() *daemon { return startDaemonArgs(t, listen, data, args, env...) }
	return onCluster{daemon: d, start: start, namespace: k.Namespace(), containers: func() []runtime.Container {
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

	// An ordinary agent-sandbox Sandbox, Ready, as agent-sandbox's own Go
	// client (and kubectl) sees it.
	rc, err := clientcmd.BuildConfigFromFlags("", os.Getenv("BOTHY_KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	helper, err := sandbox.NewK8sHelper(rc, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	obj, err := helper.AgentsClient.Sandboxes(cl.namespace).Get(ctx, cs[0].ID, metav1.GetOptions{})
	if err != nil || !meta.IsStatusConditionTrue(obj.Status.Conditions, "Ready") || len(obj.Status.PodIPs) != 1 {
		t.Fatalf("the Sandbox, as agent-sandbox's client sees it: %+v %v", obj, err)
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
	// Its pod has no init container: it runs bothy's copy of its image
	// with the agent on top, and the agent, its PID 1, installed the
	// network rules itself.
	core, err := k8s.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := core.CoreV1().Pods(cl.namespace).Get(ctx, cs[0].ID, metav1.GetOptions{})
	if err != nil || len(pod.Spec.InitContainers) != 0 || !strings.Contains(pod.Spec.Containers[0].Image, "-agent-") {
		t.Fatalf("the sandbox's pod: %v %+v", err, pod)
	}
	// Root in the sandbox has today's capabilities, and none to change
	// the network; nor has the agent, which dropped the two it needed
	// from every set, the bounding set too, before anything started.
	out, _, _ = bothy(t, d.url, key, "exec", id, "--", "sh", "-c",
		"grep -h -E '^Cap(Prm|Eff|Bnd)' /proc/self/status /proc/1/status; ip link set lo down; echo $?")
	if want := strings.Repeat("CapPrm:\t00000000000004eb\nCapEff:\t00000000000004eb\nCapBnd:\t00000000000004eb\n", 2); !strings.HasPrefix(out, want) || strings.HasSuffix(out, "\n0\n") {
		t.Fatalf("capabilities: %q", out)
	}
	// The files the node binds into every container from its own disk,
	// outside the sandbox's disk limit, root cannot write, nor the
	// container's log through the agent's descriptors, nor read the
	// agent's environment; nor can it make a user namespace, which the
	// runtime's seccomp profile allowed the container for the capability
	// the agent needed and dropped.
	out, _, _ = bothy(t, d.url, key, "exec", id, "--", "sh", "-c",
		"for f in /etc/resolv.conf /etc/hosts /etc/hostname /dev/termination-log /proc/1/fd/1 /proc/1/fd/2; do echo x >> $f 2>/dev/null && echo $f writable; done; "+
			"cat /proc/1/environ >/dev/null 2>&1 && echo environ; command -v unshare >/dev/null || echo no unshare; "+
			"unshare --user --map-root-user true 2>/dev/null && echo unshared; grep -c . /etc/resolv.conf >/dev/null && echo read")
	if out != "read\n" {
		t.Fatalf("the node's files and namespaces: %q", out)
	}

	// Files both ways.
	if _, err := c.WriteFile(ctx, id, "/root/note", strings.NewReader("kept\n"), api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, _, code := bothy(t, d.url, key, "cat", id+":/root/note"); code != 0 || out != "kept\n" {
		t.Fatalf("cat: %d %q", code, out)
	}

	// A terminal, and a background process serving a port, reached
	// through bothy.
	terminalAndPort(t, d.url, key, id, "hello from the cluster")

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
	// Its files are in a snapshot, and it is on a container of that
	// snapshot's, with no pod.
	if cs := containers(); len(cs) != 1 || cs[0].State != runtime.StateCreated || !strings.HasPrefix(cs[0].Image, "bothy/snapshot:") {
		t.Fatalf("stopped, on the cluster: %+v", cs)
	}
	if _, e, code := bothy(t, d.url, key, "start", id); code != 0 {
		t.Fatalf("start: %s", e)
	}
	if out, _, code := bothy(t, d.url, key, "exec", id, "--", "cat", "/root/note"); code != 0 || out != "kept\n" {
		t.Fatalf("after stop and start: %d %q", code, out)
	}
	// Twice: each stop keeps the files as a snapshot labelled so, and
	// the one before is deleted.
	if _, err := c.Exec(ctx, id, api.ExecRequest{Shell: "echo again >> /root/note && rm /srv/index.html"}); err != nil {
		t.Fatal(err)
	}
	if _, e, code := bothy(t, d.url, key, "stop", id); code != 0 {
		t.Fatalf("stop: %s", e)
	}
	if _, e, code := bothy(t, d.url, key, "start", id); code != 0 {
		t.Fatalf("start: %s", e)
	}
	if out, _, code := bothy(t, d.url, key, "exec", id, "--", "sh", "-c", "cat /root/note; ls /srv"); code != 0 || out != "kept\nagain\n" {
		t.Fatalf("after a second stop and start: %d %q", code, out)
	}
	snaps, err := c.ListSnapshots(ctx, "")
	if err != nil || len(snaps.Snapshots) != 1 || snaps.Snapshots[0].Labels["bothy.kept-at-stop"] != id {
		t.Fatalf("snapshots kept by the stops: %+v %v", snaps, err)
	}

	if _, e, code := bothy(t, d.url, key, "rm", id); code != 0 {
		t.Fatalf("rm: %s", e)
	}
	if cs := containers(); len(cs) != 0 {
		t.Fatalf("after rm, on the cluster: %+v", cs)
	}
	if snaps, err := c.ListSnapshots(ctx, ""); err != nil || len(snaps.Snapshots) != 0 {
		t.Fatalf("snapshots after rm: %+v %v", snaps, err)
	}
}

// testHosts makes a network namespace of the test's own, reached from the
// cluster's pods (and from nothing else on this machine: a routing table of
// the test's own, for traffic from the pod network only) through a veth
// pair, holding a metadata address, a private one and a public one (a
// documentation range), and a web server answering on all of them.
// Everything is removed at the test's end.
func testHosts(t *testing.T) (metadata, private, public string) {
	t.Helper()
	ns := fmt.Sprintf("btk-%d", os.Getpid()%100000)
	host, peer := ns+"h", ns+"p"
	table := strconv.Itoa(20000 + os.Getpid()%10000)
	metadata, private, public = "169.254.169.254", "192.168.77.10", "203.0.113.7"
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, pid := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", pid).Run()
			}
		}
		_ = exec.Command("ip", "rule", "del", "from", "10.250.0.0/24", "lookup", table).Run()
		_ = exec.Command("ip", "route", "flush", "table", table).Run()
		_ = exec.Command("ip", "link", "delete", host).Run()
		_ = exec.Command("ip", "netns", "delete", ns).Run()
	})
	run("ip", "netns", "add", ns)
	run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
	run("ip", "link", "set", peer, "netns", ns)
	run("ip", "addr", "add", "10.99.7.1/30", "dev", host)
	run("ip", "link", "set", host, "up")
	in := func(args ...string) { run(append([]string{"ip", "netns", "exec", ns}, args...)...) }
	in("ip", "addr", "add", "10.99.7.2/30", "dev", peer)
	run("ip", "route", "add", "10.99.7.0/30", "dev", host, "table", table)
	for _, a := range []string{metadata, private, public} {
		in("ip", "addr", "add", a+"/32", "dev", peer)
		run("ip", "route", "add", a+"/32", "via", "10.99.7.2", "table", table)
	}
	run("ip", "rule", "add", "from", "10.250.0.0/24", "lookup", table, "priority", table)
	in("ip", "link", "set", peer, "up")
	in("ip", "link", "set", "lo", "up")
	in("ip", "route", "add", "default", "via", "10.99.7.1")
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("test host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command("ip", "netns", "exec", ns, "busybox", "httpd", "-f", "-p", "80", "-h", www)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	return metadata, private, public
}

// TestKubeContainment proves, from inside sandbox pods on the real
// cluster, that a sandbox reaches public addresses but not the metadata
// address, private ranges, the node or another sandbox; that one without
// a network reaches nothing; and that root in the sandbox cannot change
// the rules that say so. The cluster enforces no NetworkPolicy here: the
// rules are the pod's own.
func TestKubeContainment(t *testing.T) {
	const key = "e2e-kube-contain-0123456789abcd"
	// The operator opens the node's address on the pod network: the node
	// stays out of reach all the same.
	cl := startOnCluster(t, key, "BOTHY_ALLOW_PRIVATE=10.250.0.1/32")
	metadata, private, public := testHosts(t)
	ctx := context.Background()
	c := api.NewClient(cl.url, key)
	// A server on the node, on the pod network's gateway.
	node, err := net.Listen("tcp", "10.250.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	go func() {
		for {
			conn, err := node.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte("HTTP/1.0 200 OK\r\n\r\nnode\n"))
			conn.Close()
		}
	}()

	a, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, b.ID, api.ExecRequest{Shell: "mkdir -p /srv && echo other > /srv/index.html && httpd -p 8000 -h /srv && ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("the other sandbox's server: %v %+v", err, res)
	}
	other := strings.TrimSpace(res.Stdout)
	// An HTTP GET with busybox's nc (its wget, static glibc, crashes on a
	// name lookup).
	get := func(id, hostport string) (string, int) {
		t.Helper()
		host, port, _ := net.SplitHostPort(hostport)
		res, err := c.Exec(ctx, id, api.ExecRequest{Shell: `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 ` + host + " " + port})
		if err != nil {
			t.Fatal(err)
		}
		return res.Stdout, res.ExitCode
	}
	// The way out works: the refusals below are the rules'.
	if out, code := get(a.ID, public+":80"); code != 0 || !strings.HasSuffix(out, "test host\n") {
		t.Fatalf("a public address: %d %q", code, out)
	}
	if out, code := get(b.ID, "127.0.0.1:8000"); code != 0 || !strings.HasSuffix(out, "other\n") {
		t.Fatalf("the other sandbox's own server: %d %q", code, out)
	}
	for _, hp := range []string{metadata + ":80", private + ":80", node.Addr().String(), other + ":8000", fmt.Sprintf("%s:%d", other, 49980)} {
		if out, code := get(a.ID, hp); code == 0 || out != "" {
			t.Errorf("%s reachable from a sandbox: %d %q", hp, code, out)
		}
	}

	// Root in the sandbox cannot change the rules: the agent binary that
	// installed them is there, but not the capability.
	res, err = c.Exec(ctx, a.ID, api.ExecRequest{Shell: "/.bothy/bin/bothy-agent init-pod --agent-port 1; echo rc=$?; ip link set eth0 down; echo rc=$?"})
	if err != nil || !strings.Contains(res.Stdout, "rc=1\nrc=") || strings.HasSuffix(res.Stdout, "rc=0\n") {
		t.Fatalf("root changing the rules: %v %+v", err, res)
	}
	if out, code := get(a.ID, metadata+":80"); code == 0 || out != "" {
		t.Fatalf("the metadata address after root's tries: %q", out)
	}

	// The agent's token and keys are root's alone.
	res, err = c.Exec(ctx, a.ID, api.ExecRequest{Cmd: []string{"cat", "/.bothy/run/token", "/.bothy/run/agent-key.pem"}, User: "user"})
	if err != nil || res.ExitCode == 0 || res.Stdout != "" {
		t.Fatalf("another user read the agent's secrets: %v %+v", err, res)
	}

	// Without a network: nothing out, and bothy still reaches its agent.
	none, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Network: "none"}, "")
	if err != nil {
		t.Fatalf("create without a network: %v\n%s", err, cl.log())
	}
	if out, code := get(none.ID, public+":80"); code == 0 || out != "" {
		t.Fatalf("a sandbox without a network reached %s: %q", public, out)
	}
	for _, id := range []string{a.ID, b.ID, none.ID} {
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKubeSnapshots: checkpoint, restore (whole and by path), fork, create
// from a snapshot, and export and import, with sandboxes on the cluster; the
// layers go through the cluster's registry.
func TestKubeSnapshots(t *testing.T) {
	const key = "e2e-kube-snap-0123456789abcdef01"
	cl := startOnCluster(t, key)
	ctx := context.Background()
	c := api.NewClient(cl.url, key)
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	sh := func(id, script string) string {
		t.Helper()
		res, err := c.Exec(ctx, id, api.ExecRequest{Shell: script})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s: %+v %v", script, res, err)
		}
		return res.Stdout
	}
	sh(sb.ID, "mkdir -p /data && echo one > /data/a && echo two > /data/b")
	snap, err := c.CreateSnapshot(ctx, sb.ID, api.CreateSnapshotRequest{Name: "first"})
	if err != nil {
		t.Fatal(err)
	}
	sh(sb.ID, "echo changed > /data/a && rm /data/b && echo new > /data/c")
	if _, err := c.RestoreSandbox(ctx, sb.ID, snap.ID, "/data/b"); err != nil {
		t.Fatal(err)
	}
	if out := sh(sb.ID, "cat /data/a /data/b /data/c"); out != "changed\ntwo\nnew\n" {
		t.Fatalf("after restoring one path: %q", out)
	}
	if _, err := c.RestoreSandbox(ctx, sb.ID, snap.ID); err != nil {
		t.Fatal(err)
	}
	if out := sh(sb.ID, "cat /data/a /data/b; ls /data"); out != "one\ntwo\na\nb\n" {
		t.Fatalf("after restoring the whole: %q", out)
	}
	fork, err := c.Fork(ctx, sb.ID, api.ForkRequest{Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(fork.Sandboxes) != 2 {
		t.Fatalf("fork: %+v", fork)
	}
	for _, f := range fork.Sandboxes {
		if out := sh(f.ID, "cat /data/a"); out != "one\n" {
			t.Fatalf("fork %s: %q", f.ID, out)
		}
	}
	from, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: snap.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	if out := sh(from.ID, "cat /data/b"); out != "two\n" {
		t.Fatalf("created from the snapshot: %q", out)
	}
	// Export and import keep the archive format of the Docker runtime; a
	// sandbox on the cluster starts from the imported snapshot.
	fromImport := fromExport(t, c, snap.ID)
	if out := sh(fromImport.ID, "cat /data/a /data/b"); out != "one\ntwo\n" {
		t.Fatalf("created from the snapshot exported and imported: %q", out)
	}
	for _, id := range []string{sb.ID, fork.Sandboxes[0].ID, fork.Sandboxes[1].ID, from.ID, fromImport.ID} {
		if err := c.DeleteSandbox(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if cs := cl.containers(); len(cs) != 0 {
		t.Fatalf("left on the cluster: %+v", cs)
	}
}

// TestKubeClients runs the sessions of real clients nobody here wrote (E2B's
// JS SDK, the MCP SDK's client) and of the Python client against a bothy
// whose sandboxes are on the cluster, on the Debian image they expect.
// E2B's pause is a stop there: a pod cannot be frozen.
func TestKubeClients(t *testing.T) {
	const key = "e2e-kube-clients-0123456789abcd"
	cl := startOnCluster(t, key, "BOTHY_DEFAULT_IMAGE=bothy/base")
	dir := e2bSDK(t)
	py := installPython(t)
	t.Run("E2B", func(t *testing.T) { e2bSession(t, cl.daemon, dir, key) })
	t.Run("MCP", func(t *testing.T) { mcpSession(t, cl.daemon, key) })
	t.Run("Python", func(t *testing.T) { pythonSession(t, py, cl.url, key) })
	if cs := cl.containers(); len(cs) != 0 {
		t.Fatalf("left on the cluster: %+v", cs)
	}
}

// terminalAndPort checks, in sandbox id, a terminal through bothy shell (its
// size, input, exit code) and a background process serving a port through
// bothy's port proxy, answering page.
func terminalAndPort(t *testing.T, url, key, id, page string) {
	t.Helper()
	term := startTerminal(t, url, key, 100, 30, "shell", id)
	term.tty.Write([]byte("stty size; echo $((7*6))x\r"))
	term.wait("30 100")
	term.wait("42x")
	term.tty.Write([]byte("exit 4\r"))
	if err := term.cmd.Wait(); err == nil || !strings.Contains(err.Error(), "exit status 4") {
		t.Fatalf("bothy shell: %v; screen %q", err, term.screen.String())
	}
	ctx := context.Background()
	c := api.NewClient(url, key)
	if _, err := c.Exec(ctx, id, api.ExecRequest{Shell: "mkdir -p /srv && echo " + page + " > /srv/index.html"}); err != nil {
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
	if code, body := do(t, http.DefaultClient, req); code != 200 || body != page+"\n" {
		t.Fatalf("through the port proxy: %d %q", code, body)
	}
}

// fromExport exports snapshot snap, imports the archive, and creates a
// sandbox of the imported snapshot.
func fromExport(t *testing.T, c *api.Client, snap string) api.Sandbox {
	t.Helper()
	ctx := context.Background()
	var archive bytes.Buffer
	if _, err := c.ExportSnapshot(ctx, snap, &archive); err != nil {
		t.Fatal(err)
	}
	imported, err := c.ImportSnapshot(ctx, &archive)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Snapshot: imported.ID}, "")
	if err != nil {
		t.Fatal(err)
	}
	return sb
}
