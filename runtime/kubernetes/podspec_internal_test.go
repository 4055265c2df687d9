package kubernetes

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/bothy/bothy/agent/wire"
	"github.com/bothy/bothy/runtime"
)

// TestPodSpecContainsAndStaysSmall: a sandbox's pod carries the
// containment settings, and asks the scheduler for little, so that a node
// holds as many idle sandboxes as its memory does (a limit without a
// request would be taken as the request).
func TestPodSpecContainsAndStaysSmall(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("t"), 0o600); err != nil {
		t.Fatal(err)
	}
	k := &Kubernetes{cfg: Config{AgentImage: "reg/bothy/agent:1", UserNS: true}, networks: map[string]runtime.NetworkSpec{
		"net": {Name: "net", Isolated: true, Blocked: []string{"10.0.0.0/8"}, Allowed: []string{"10.1.0.0/16"}},
	}}
	spec := runtime.Spec{
		Image: "bothy/busybox", Entrypoint: []string{wire.BinaryPath}, User: "0:0", Network: "net",
		NanoCPUs: 1e9, MemoryBytes: 1 << 30, DiskBytes: 10 << 30, CapAdd: []string{"CHOWN", "KILL"},
		StopTimeout: 3 * time.Second,
		Mounts:      []runtime.Mount{{Source: "/agent", Target: wire.BinaryPath, ReadOnly: true}, {Source: dir, Target: wire.RunMount, ReadOnly: true}},
	}
	ps, files, err := k.podSpec(spec, "bothy-x", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || !files[0].Dir {
		t.Fatalf("carried mounts: %+v", files)
	}
	c := ps.Containers[0]
	small := map[corev1.ResourceName]string{corev1.ResourceCPU: "10m", corev1.ResourceMemory: "16Mi", corev1.ResourceEphemeralStorage: "64Mi"}
	for name, want := range small {
		got := c.Resources.Requests[name]
		if got.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("request of %s: %s, want %s", name, got.String(), want)
		}
	}
	if got := c.Resources.Limits[corev1.ResourceEphemeralStorage]; got.Value() != 10<<30 {
		t.Errorf("disk limit %s", got.String())
	}
	if len(ps.InitContainers) != 1 {
		t.Fatalf("init containers: %d", len(ps.InitContainers))
	}
	in := ps.InitContainers[0]
	if got := in.Resources.Requests[corev1.ResourceCPU]; got.Cmp(resource.MustParse("10m")) != 0 {
		t.Errorf("the init container's CPU request: %s", got.String())
	}
	if add := in.SecurityContext.Capabilities.Add; len(add) != 1 || add[0] != "NET_ADMIN" {
		t.Errorf("the init container's capabilities: %v", add)
	}
	// The sandbox's container: no NET_ADMIN (the init container installs
	// the rules); its agent, as PID 1, makes the node's files read-only
	// (SYS_ADMIN) and drops both capabilities it was given for that.
	if add := fmt.Sprint(c.SecurityContext.Capabilities.Add); add != "[CHOWN KILL SYS_ADMIN SETPCAP]" {
		t.Errorf("the sandbox's capabilities: %s", add)
	}
	readOnly := func(c corev1.Container) string {
		for _, e := range c.Env {
			if e.Name == wire.ReadOnlyEnv {
				return e.Value
			}
		}
		return ""
	}
	if ro := readOnly(c); ro != "/etc/resolv.conf /etc/hosts /etc/hostname /dev/termination-log" || c.TerminationMessagePath != wire.TerminationLog {
		t.Errorf("%s=%q, termination log %q", wire.ReadOnlyEnv, ro, c.TerminationMessagePath)
	}
	if *c.SecurityContext.Privileged || *c.SecurityContext.AllowPrivilegeEscalation || c.SecurityContext.Capabilities.Drop[0] != "ALL" {
		t.Errorf("the sandbox's security context: %+v", c.SecurityContext)
	}
	if *ps.AutomountServiceAccountToken || *ps.EnableServiceLinks || ps.HostUsers == nil || *ps.HostUsers ||
		ps.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || ps.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("the pod: %+v", ps)
	}
	for _, v := range ps.Volumes {
		if v.Secret != nil && *v.Secret.DefaultMode != 0o400 {
			t.Errorf("the agent's secrets have mode %o", *v.Secret.DefaultMode)
		}
	}
	// The rules: the node from the downward API, the network's ranges.
	want := []string{wire.BinaryPath, "init-pod", "--agent-port=49980", "--host=$(BOTHY_HOST_IPS)", "--block=10.0.0.0/8", "--allow=10.1.0.0/16", "--install", "/.bothy-install/bothy-agent"}
	if len(in.Command) != len(want) {
		t.Fatalf("init command %q", in.Command)
	}
	for i := range want {
		if in.Command[i] != want[i] {
			t.Fatalf("init command %q, want %q", in.Command, want)
		}
	}
	// The init container runs the agent from its image, and fills the
	// volume the sandbox's container runs it from, elsewhere.
	if len(in.VolumeMounts) != 1 || in.VolumeMounts[0].MountPath != "/.bothy-install" {
		t.Errorf("the init container's mounts: %+v", in.VolumeMounts)
	}

	// An image that carries the agent: no init container, the same rules
	// in the agent's environment, the node's addresses beside them, and
	// the two capabilities the agent drops once they are installed.
	if !carries(spec) {
		t.Fatal("a sandbox's spec does not take an image with the agent")
	}
	ps, _, err = k.podSpec(spec, "bothy-x", "reg/bothy/busybox:r-1-agent-2")
	if err != nil {
		t.Fatal(err)
	}
	c = ps.Containers[0]
	if len(ps.InitContainers) != 0 || c.Image != "reg/bothy/busybox:r-1-agent-2" {
		t.Fatalf("init containers %d, image %s", len(ps.InitContainers), c.Image)
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath == "/.bothy/bin" {
			t.Errorf("the agent is mounted over the image's: %+v", m)
		}
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if g := env[wire.GuardEnv].Value; g != strings.Join(want[2:len(want)-2], " ") {
		t.Errorf("%s=%q", wire.GuardEnv, g)
	}
	if f := env[wire.HostIPsEnv].ValueFrom; f == nil || f.FieldRef.FieldPath != "status.hostIPs" {
		t.Errorf("%s: %+v", wire.HostIPsEnv, env[wire.HostIPsEnv])
	}
	if add := fmt.Sprint(c.SecurityContext.Capabilities.Add); add != "[CHOWN KILL NET_ADMIN SYS_ADMIN SETPCAP]" {
		t.Errorf("capabilities %s", add)
	}
	if readOnly(c) == "" {
		t.Errorf("the agent is not asked to make the node's files read-only")
	}
	// Nobody else's environment sets the rules, or the files.
	for _, name := range []string{wire.GuardEnv, wire.HostIPsEnv, wire.ReadOnlyEnv} {
		bad := spec
		bad.Env = []string{name + "=--none"}
		if _, _, err := k.podSpec(bad, "bothy-z", "reg/x"); err == nil {
			t.Errorf("a spec set %s", name)
		}
	}
	// The agent mounted and not PID 1, or not root, would keep what it is
	// given: refused.
	for _, s := range []runtime.Spec{{User: "1000", Entrypoint: spec.Entrypoint, Mounts: spec.Mounts}, {User: "0", Entrypoint: []string{"/bin/sh"}, Mounts: spec.Mounts}} {
		if _, _, err := k.podSpec(s, "bothy-w", ""); err == nil {
			t.Errorf("%+v was taken", s)
		}
	}
	// A container whose PID 1 is not the agent is given nothing to drop.
	plain := runtime.Spec{Image: "bothy/busybox", Entrypoint: []string{"sleep", "600"}, Network: "net"}
	ps, _, err = k.podSpec(plain, "bothy-y", "")
	if err != nil {
		t.Fatal(err)
	}
	if c := ps.Containers[0]; len(c.SecurityContext.Capabilities.Add) != 0 || readOnly(c) != "" {
		t.Errorf("a container without the agent: capabilities %v, env %v", c.SecurityContext.Capabilities.Add, c.Env)
	}
	// Only root's agent, run from where the image carries it, installs
	// rules.
	for _, s := range []runtime.Spec{{User: "1000", Entrypoint: spec.Entrypoint, Mounts: spec.Mounts}, {User: "0", Entrypoint: []string{"/bin/sh"}, Mounts: spec.Mounts}, {User: "0", Entrypoint: spec.Entrypoint}} {
		if carries(s) {
			t.Errorf("%+v takes an image with the agent", s)
		}
	}

	// A network this runtime was never told of is refused.
	spec.Network = "other"
	if _, _, err := k.podSpec(spec, "bothy-y", ""); err == nil {
		t.Error("a pod on an unknown network was made")
	}
}

// TestDigestTellsSecretsApart: a start rewrites a mount's Secret only when
// the digest of its files changed, so two different sets of files never
// share one, wherever a name ends and its contents begin.
func TestDigestTellsSecretsApart(t *testing.T) {
	sets := []map[string][]byte{
		{},
		{"a": nil},
		{"a": []byte("bc")},
		{"ab": []byte("c")},
		{"a": []byte("b"), "c": nil},
		{"a": []byte("b"), "c": []byte("d")},
		{"f": []byte("127.0.0.1\tlocalhost\n")},
		{"f": []byte("127.0.0.1\tlocalhost\n\n")},
	}
	seen := map[[32]byte]int{}
	for i, set := range sets {
		d := digest(set)
		if j, ok := seen[d]; ok {
			t.Fatalf("sets %d and %d share a digest", j, i)
		}
		seen[d] = i
		if digest(set) != d {
			t.Fatalf("set %d: the digest changed between two reads", i)
		}
	}
}
