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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/docker"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds bothyd, bothy and the static agent once.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "bothy-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, name := range []string{"bothyd", "bothy", "bothy-agent"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, name), "github.com/bothy/bothy/cmd/"+name)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v: %s", name, err, out)
				return
			}
		}
		// The agent binary must be readable by the remapped container root.
		buildErr = os.Chmod(binDir, 0o755)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// daemon is one bothyd process.
type daemon struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedWriter
	done   chan struct{}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startDaemon runs bothy on listen with data, waiting for /readyz.
func startDaemon(t *testing.T, listen, data string, env ...string) *daemon {
	t.Helper()
	return startDaemonArgs(t, listen, data, nil, env...)
}

// startDaemonArgs is startDaemon with more command-line arguments.
func startDaemonArgs(t *testing.T, listen, data string, args []string, env ...string) *daemon {
	t.Helper()
	bin := binaries(t)
	cmd := exec.Command(filepath.Join(bin, "bothyd"), append([]string{"--listen", listen, "--data", data,
		"--network", network, "--bridge", bridge, "--log-level", "debug"}, args...)...)
	// No warm runners or sandboxes unless a test asks for them: they cost
	// every test CPU.
	cmd.Env = append(append(os.Environ(), "BOTHY_POOL_MIN_IDLE=0", "BOTHY_SANDBOX_POOL=0"), env...)
	d := &daemon{cmd: cmd, stderr: &lockedWriter{}, done: make(chan struct{})}
	cmd.Stderr = d.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(d.done) }()
	t.Cleanup(func() { d.stop(t) })
	_, port, _ := net.SplitHostPort(listen)
	d.url = "http://127.0.0.1:" + port
	deadline := time.Now().Add(6 * time.Minute) // a first run builds the base image
	for {
		select {
		case <-d.done:
			t.Fatalf("bothy exited: %s", d.log())
		default:
		}
		resp, err := http.Get(d.url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bothy not ready: %s", d.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (d *daemon) log() string {
	d.stderr.mu.Lock()
	defer d.stderr.mu.Unlock()
	return d.stderr.w.String()
}

// stop shuts bothy down as an operator does (SIGTERM), so that it removes
// its runners, those it was still making included; SIGKILL after a minute.
func (d *daemon) stop(t *testing.T) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(time.Minute):
		t.Errorf("bothy did not stop within a minute of SIGTERM: %s", d.log())
		d.kill()
	}
}

// kill sends SIGKILL: no shutdown path runs.
func (d *daemon) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

type lockedWriter struct {
	mu sync.Mutex
	w  bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// bothy runs the CLI and returns stdout, stderr and its exit code.
func bothy(t *testing.T, url, key string, args ...string) (string, string, int) {
	t.Helper()
	return bothyIn(t, url, key, "", args...)
}

// bothyIn runs bothy as bothy does, with stdin as its standard input.
func bothyIn(t *testing.T, url, key, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "bothy"), args...)
	cmd.Env = append(os.Environ(), "BOTHY_URL="+url, "BOTHY_KEY="+key)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// The suite's network, which the sandboxes of every bothy it starts join.
var network, bridge = testenv.Network("test")

// TestMain fails the run when a test leaves a container, image or network of
// this suite's in the engine.
func TestMain(m *testing.M) {
	testenv.Main(m, func() {
		if binDir != "" {
			_ = os.RemoveAll(binDir)
		}
	})
}

func removeInstance(t *testing.T, data string) {
	if instance, err := readInstance(data); err == nil {
		sweep(testenv.Docker(t), instance)
	}
}

// readInstance reads the instance ID of the bothy whose data directory is
// data.
func readInstance(data string) (string, error) {
	b, err := os.ReadFile(filepath.Join(data, "instance"))
	return strings.TrimSpace(string(b)), err
}

// sweep removes every container and image of instance.
func sweep(d *docker.Docker, instance string) {
	cs, _ := d.List(context.Background(), map[string]string{runtime.LabelInstance: instance})
	for _, c := range cs {
		_ = d.Remove(context.Background(), c.ID)
	}
	imgs, _ := d.ImageList(context.Background())
	for _, img := range imgs {
		if img.Labels[runtime.LabelInstance] == instance {
			for _, tag := range img.Tags {
				_ = d.ImageRemove(context.Background(), tag)
			}
		}
	}
}

// TestUserJourney walks the acceptance of the foundation issue with the built
// binaries, on the default (Debian) image.
// TestUserJourney walks the CLI's journey on each transport of the agent
// channel.
func TestUserJourney(t *testing.T) {
	testenv.Docker(t)
	for _, transport := range []string{"unix", "tcp"} {
		t.Run(transport, func(t *testing.T) { userJourney(t, transport) })
	}
}

func userJourney(t *testing.T, transport string) {
	const key = "e2e-admin-key-0123456789abcdef"
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	// Listen on every address, so that the firewall, not the bind address,
	// is what keeps sandboxes away from bothy's port.
	port := freePort(t)
	listen := fmt.Sprintf("0.0.0.0:%d", port)
	env := []string{"BOTHY_ADMIN_KEY=" + key, "BOTHY_AGENT_TRANSPORT=" + transport}
	d := startDaemon(t, listen, data, env...)

	out, errOut, code := bothy(t, d.url, key, "create", "--label", "suite=e2e")
	if code != 0 {
		t.Fatalf("bothy create: %d %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	// The sandbox is on the transport asked for: the agent's port beside
	// its token, or not.
	_, err := os.Stat(filepath.Join(data, "run", id, "listen"))
	if networked := err == nil; networked != (transport == "tcp") {
		t.Fatalf("transport %s, and the agent's port is there: %v", transport, networked)
	}
	if out, _, code := bothy(t, d.url, key, "exec", id, "--", "python3", "-c", "print(6*7)"); code != 0 || out != "42\n" {
		t.Fatalf("python: %d %q", code, out)
	}
	if _, errOut, code := bothy(t, d.url, key, "exec", id, "--timeout", "1s", "--", "sleep", "60"); code != 137 || !strings.Contains(errOut, "timed out after 1s") {
		t.Fatalf("exec past its --timeout: exit %d, %q", code, errOut)
	}
	if _, _, code := bothy(t, d.url, key, "exec", id, "--", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	if _, _, code := bothy(t, d.url, key, "exec", id, "--", "sh", "-c", "echo kept > /root/note"); code != 0 {
		t.Fatal("write file")
	}

	// Stop and start keep the file.
	if _, e, code := bothy(t, d.url, key, "stop", id); code != 0 {
		t.Fatalf("stop: %s", e)
	}
	if out, _, _ := bothy(t, d.url, key, "inspect", id); !strings.Contains(out, `"state": "stopped"`) {
		t.Fatalf("not stopped: %s", out)
	}
	if _, e, code := bothy(t, d.url, key, "start", id); code != 0 {
		t.Fatalf("start: %s", e)
	}
	if out, _, _ := bothy(t, d.url, key, "exec", id, "--", "cat", "/root/note"); out != "kept\n" {
		t.Fatalf("after stop/start: %q", out)
	}

	// kill -9 and restart: the sandbox is still listed and still works.
	d.kill()
	d = startDaemon(t, listen, data, env...)
	if out, _, _ := bothy(t, d.url, key, "ls"); !strings.Contains(out, id) || !strings.Contains(out, "running") {
		t.Fatalf("after restart, ls: %s", out)
	}
	if out, e, code := bothy(t, d.url, key, "exec", id, "--", "cat", "/root/note"); code != 0 || out != "kept\n" {
		t.Fatalf("after restart: %d %q %s", code, out, e)
	}

	// Isolation: neither bothy's port on the host, nor the metadata address,
	// nor another sandbox is reachable from inside.
	c := api.NewClient(d.url, key)
	ctx := context.Background()
	other, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	// Start a server, and wait (bounded) until it listens.
	res, err := c.Exec(ctx, other.ID, api.ExecRequest{Shell: "python3 -m http.server 8000 >/dev/null 2>&1 & " +
		"for i in $(seq 1 300); do curl -s -o /dev/null http://127.0.0.1:8000/ && break; sleep 0.1; done; hostname -I"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("start server: %v %+v", err, res)
	}
	otherIP := strings.Fields(res.Stdout)[0]
	if strings.HasPrefix(otherIP, "127.") {
		t.Fatalf("the other sandbox's address is a loopback one: %q", res.Stdout)
	}
	// The server answers inside its own sandbox...
	res, err = c.Exec(ctx, other.ID, api.ExecRequest{Shell: "curl -s -m 3 -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/"})
	if err != nil || res.Stdout != "200" {
		t.Fatalf("own server: %v %+v", err, res)
	}
	res, err = c.Exec(ctx, id, api.ExecRequest{Shell: "ip route 2>/dev/null | awk '/default/{print $3}' || true"})
	if err != nil {
		t.Fatal(err)
	}
	gateway := strings.TrimSpace(res.Stdout)
	if gateway == "" {
		gateway = strings.Join(strings.Split(otherIP, ".")[:3], ".") + ".1"
	}
	targets := []string{
		fmt.Sprintf("http://%s:%d/healthz", gateway, port),
		fmt.Sprintf("http://%s:%d/healthz", hostIP(t), port),
		"http://169.254.169.254/latest/meta-data/",
		"http://" + otherIP + ":8000/",
		// The other sandbox's agent port (on the network transport).
		"http://" + otherIP + ":49980/",
	}
	for _, u := range targets {
		res, err := c.Exec(ctx, id, api.ExecRequest{Cmd: []string{"curl", "-s", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", u}})
		if err != nil {
			t.Fatal(err)
		}
		if res.ExitCode == 0 || res.Stdout != "000" {
			t.Errorf("%s reachable from a sandbox: exit %d, status %q", u, res.ExitCode, res.Stdout)
		}
	}
	// ...and the host reaches bothy's port on that same address, so the
	// refusals above are the firewall's doing.
	resp, err := http.Get(fmt.Sprintf("http://%s:%d/healthz", hostIP(t), port))
	if err != nil {
		t.Fatalf("host cannot reach its own bothy: %v", err)
	}
	resp.Body.Close()

	if _, e, code := bothy(t, d.url, key, "rm", id, other.ID); code != 0 {
		t.Fatalf("rm: %s", e)
	}
}

// hostIP is the host's first non-loopback address.
func hostIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !strings.HasPrefix(ipn.IP.String(), "172.") {
			return ipn.IP.String()
		}
	}
	t.Fatal("no host address")
	return ""
}

// TestAdminKeyPrintedOnce: with no BOTHY_ADMIN_KEY, the first start makes an
// admin key and prints it; the next start does not.
func TestAdminKeyPrintedOnce(t *testing.T) {
	testenv.Docker(t)
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	env := []string{"BOTHY_ADMIN_KEY=", "BOTHY_DEFAULT_IMAGE=bothy/busybox"}
	d := startDaemon(t, listen, data, env...)
	log := d.log()
	i := strings.Index(log, "BOTHY_KEY=bothy_")
	if i < 0 {
		t.Fatalf("no key printed: %s", log)
	}
	key := strings.Fields(log[i+len("BOTHY_KEY="):])[0]
	if out, e, code := bothy(t, d.url, key, "key", "ls"); code != 0 || !strings.Contains(out, "admin") {
		t.Fatalf("key ls: %d %s %s", code, out, e)
	}
	d.kill()
	d = startDaemon(t, listen, data, env...)
	if strings.Contains(d.log(), "bothy_") {
		t.Fatal("admin key printed again")
	}
	if _, _, code := bothy(t, d.url, "bothy_wrong", "ls"); code != 1 {
		t.Fatalf("wrong key exit %d", code)
	}
}

// startWithSandbox runs a bothy (busybox by default) with an admin key and
// makes one sandbox on it.
func startWithSandbox(t *testing.T, key string) (*daemon, api.Sandbox) {
	t.Helper()
	testenv.Docker(t)
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	d := startDaemon(t, fmt.Sprintf("127.0.0.1:%d", freePort(t)), data,
		"BOTHY_ADMIN_KEY="+key, "BOTHY_DEFAULT_IMAGE=bothy/busybox")
	sb, err := api.NewClient(d.url, key).CreateSandbox(context.Background(), api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	return d, sb
}
