package main

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bothy/bothy/agent/wire"
)

func TestGateways(t *testing.T) {
	file := filepath.Join(t.TempDir(), "route")
	table := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t0100FA0A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
		"eth0\t0000FA0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
	if err := os.WriteFile(file, []byte(table), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := gateways(file)
	if err != nil || !slices.Equal(got, []netip.Addr{netip.MustParseAddr("10.250.0.1")}) {
		t.Fatalf("gateways = %v, %v", got, err)
	}
	if _, err := gateways(file + ".missing"); err == nil {
		t.Fatal("a missing routing table gave no error")
	}
}

// TestKEPReady: the KEP pod's readiness probe succeeds only when both
// services accept connections.
func TestKEPReady(t *testing.T) {
	listen := func() net.Listener {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	rest, grpc := listen(), listen()
	args := []string{"--rest", rest.Addr().String(), "--grpc", grpc.Addr().String()}
	if code := kepReady(args); code != 0 {
		t.Fatalf("both listening: exit %d", code)
	}
	grpc.Close()
	if code := kepReady(args); code != 1 {
		t.Fatalf("the process service not listening: exit %d, want 1", code)
	}
}

// TestGuardRules: the rules a pod's agent reads from its environment, one
// word per flag, an empty value too; a node's address the kubelet did not
// fill in, or a word that is no flag, fails the pod rather than install
// less.
func TestGuardRules(t *testing.T) {
	r, dst, err := guardRules(strings.Fields("--agent-port=49980 --host=10.0.0.5,fd00::5 --block=10.0.0.0/8,fc00::/7 --allow="))
	if err != nil || dst != "" {
		t.Fatal(err, dst)
	}
	if r.AgentPort != 49980 || len(r.Blocked) != 2 || len(r.Allowed) != 0 || r.None {
		t.Fatalf("%+v", r)
	}
	// The node's two addresses, then its gateways.
	if len(r.Host) < 2 || r.Host[0].String() != "10.0.0.5" || r.Host[1].String() != "fd00::5" {
		t.Fatalf("hosts %v", r.Host)
	}
	for _, bad := range []string{
		"--host=$(BOTHY_HOST_IPS)",
		"--block=10.0.0.0/33",
		"--none extra",
		"--no-such-flag",
	} {
		if _, _, err := guardRules(strings.Fields(bad)); err == nil {
			t.Errorf("%q was taken", bad)
		}
	}
}

// TestGuardSelf: the agent of a pod with no init container, as PID 1 of a
// network namespace of its own, installs its rules, makes the files it is
// given read-only, drops the three capabilities (it checks every thread's
// sets itself) and seals what they allowed before it goes on; without the
// capability to do any of it, it stops there.
func TestGuardSelf(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to make network and mount namespaces")
	}
	for _, tool := range []string{"unshare", "setpriv", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool, " is not installed")
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bothy-agent")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// A file the node would bind in, writable: bound here inside the
	// namespace, where the agent should make it read-only.
	node, bound := filepath.Join(dir, "node"), filepath.Join(dir, "resolv.conf")
	for _, f := range []string{node, bound} {
		if err := os.WriteFile(f, nil, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{wire.GuardEnv + "=--agent-port=49980 --host=$(" + wire.HostIPsEnv + ") --block=10.0.0.0/8 --allow=",
		wire.HostIPsEnv + "=192.0.2.1", wire.ReadOnlyEnv + "=" + bound + " /no/such/file"}
	// The kubelet expands $(...); here the test does.
	env[0] = strings.ReplaceAll(env[0], "$("+wire.HostIPsEnv+")", "192.0.2.1")
	// run runs the agent, after the words of prefix, as PID 1 of new
	// network, PID and mount namespaces, with the file bound; then, from
	// the shell that made the namespaces, it writes to the file.
	run := func(prefix ...string) (int, string) {
		script := `mount --bind "$1" "$2" || exit 9; shift 2; "$@"; code=$?; echo written >> "$BOUND" && echo "the file is writable"; exit $code`
		args := append([]string{"--net", "--pid", "--mount", "--propagation", "private", "--fork", "--kill-child", "sh", "-c", script, "sh", node, bound}, prefix...)
		cmd := exec.Command("unshare", append(args, bin)...)
		cmd.Env = append(env, "BOUND="+bound, "PATH="+os.Getenv("PATH"))
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	// Contained, the file read-only, capabilities dropped: it goes on, to
	// find no channel.
	if code, out := run(); code != 2 || !strings.Contains(out, "BOTHY_SOCKET must be set") || strings.Contains(out, "writable") {
		t.Fatalf("with the capabilities: exit %d: %s", code, out)
	}
	for _, cap := range []string{"net_admin", "sys_admin", "setpcap"} {
		if code, out := run("setpriv", "--bounding-set=-"+cap, "--inh-caps=-all"); code != 1 || !strings.Contains(out, "contain the pod") {
			t.Fatalf("without CAP_%s: exit %d: %s", strings.ToUpper(cap), code, out)
		}
	}
	// A PID 1 given CAP_NET_ADMIN and CAP_SYS_ADMIN and nothing to do
	// with them starts nothing.
	pid1 := exec.Command("unshare", "--net", "--pid", "--fork", "--kill-child", bin)
	pid1.Env = []string{}
	if out, _ := pid1.CombinedOutput(); pid1.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "CAP_NET_ADMIN or CAP_SYS_ADMIN without") {
		t.Fatalf("with the capabilities and nothing to do: exit %d: %s", pid1.ProcessState.ExitCode(), out)
	}
}
