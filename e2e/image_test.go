package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// TestContainerImage builds bothy's own image from the repository's
// Dockerfile, runs bothy in it against the host's engine as docs/image.md
// says, and uses it: create a sandbox, run a command in it, delete it.
func TestContainerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds an image")
	}
	testenv.Docker(t)
	tag := bothyImage(t)
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	size := docker("image", "inspect", "-f", "{{.Size}}", tag)
	t.Logf("image %s: %s bytes", tag, size)

	// The data directory is mounted at the same path in the container as
	// on the host: bothy asks the engine to bind-mount paths under it
	// (agent sockets, the agent binary) into sandboxes, and the engine
	// resolves them on the host.
	data := testenv.DataDir(t)
	t.Cleanup(func() { removeInstance(t, data) })
	const key = "e2e-image-key-0123456789abcdefgh"
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	name := strings.NewReplacer("/", "-", ":", "-").Replace(tag)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command("docker", "logs", name).CombinedOutput()
			t.Logf("bothy in its container:\n%s", out)
		}
		_ = exec.Command("docker", "stop", "-t", "60", name).Run()
		_ = exec.Command("docker", "rm", "-f", name).Run()
	})
	docker("run", "-d", "--name", name, "--userns=host", "--network=host", "--cap-add=NET_ADMIN",
		"-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", data+":"+data,
		"-e", "BOTHY_ADMIN_KEY="+key, "-e", "BOTHY_POOL_MIN_IDLE=0",
		tag, "--listen", listen, "--data", data, "--network", network, "--bridge", bridge, "--default-image", "bothy/busybox")

	c := api.NewClient("http://"+listen, key)
	ctx := context.Background()
	var ready api.Readiness
	var err error
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if ready, err = c.Ready(ctx); err == nil && ready.Ready {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bothy in its container is not ready: %+v %v", ready, err)
		}
	}
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{}, "")
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "echo hello from $(hostname)"})
	if err != nil || res.ExitCode != 0 || res.Stdout != "hello from "+sb.ID+"\n" {
		t.Fatalf("exec: %+v %v", res, err)
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
}

// bothyImage builds bothy's own image from the repository's Dockerfile as
// make image does, and names its tag (removed at the test's end).
func bothyImage(t *testing.T) string {
	t.Helper()
	bin := binaries(t)
	// The image starts from the base image bothy builds.
	if out, err := exec.Command(filepath.Join(bin, "bothyd"), "--data", testenv.DataDir(t), "--build-image", "bothy/base").CombinedOutput(); err != nil {
		t.Fatalf("build the base image: %v\n%s", err, out)
	}
	buildDir := t.TempDir()
	dockerfile, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(buildDir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(buildDir, "Dockerfile"), dockerfile, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bothyd", "bothy-agent"} {
		b, err := os.ReadFile(filepath.Join(bin, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(buildDir, "bin", name), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tag := fmt.Sprintf("bothy/bothy:e2e-%d", time.Now().UnixNano())
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
	if out, err := exec.Command("docker", "build", "-q", "-t", tag, buildDir).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	return tag
}
