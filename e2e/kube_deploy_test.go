package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/internal/testenv"
)

// TestKubeInCluster deploys bothyd inside the cluster as make kube-deploy
// does (deploy/kubernetes, with the overlay scripts/kube-deploy.sh writes
// for this cluster), in a namespace of the test's own, and walks the user's
// journey against it: create, exec, files, a terminal, a background process
// and its port, a run, checkpoint, restore and fork; then its pod is deleted, and
// the one the StatefulSet starts in its place finds everything on the
// volume. At the end the script takes it all down.
func TestKubeInCluster(t *testing.T) {
	testenv.Docker(t)
	testenv.KubeRegistry(t) // skips without a cluster
	kubectl := os.Getenv("BOTHY_KUBECTL")
	image := bothyImage(t)
	suffix := make([]byte, 4)
	rand.Read(suffix)
	ns := "e2e-deploy-" + hex.EncodeToString(suffix)
	data := testenv.DataDir(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	const key = "e2e-kube-deploy-0123456789abcdef"
	script := func(verb string) (string, error) {
		cmd := exec.Command("bash", "../scripts/kube-deploy.sh", verb)
		cmd.Env = append(os.Environ(), "BOTHY_DEPLOY_IMAGE="+image, "BOTHY_DEPLOY_NAMESPACE="+ns,
			"BOTHY_DEPLOY_DATA="+data, "BOTHY_DEPLOY_LISTEN="+listen, "BOTHY_DEPLOY_KEY="+key,
			"BOTHY_DEPLOY_SETTINGS=BOTHY_SANDBOX_POOL=0") // no warm sandboxes: the test counts Sandboxes
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	kube := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(kubectl, append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := exec.Command(kubectl, "-n", ns, "logs", "bothyd-0", "--tail=80").CombinedOutput()
			t.Logf("bothyd in the cluster:\n%s", out)
		}
		if out, err := script("down"); err != nil {
			t.Errorf("kube-deploy.sh down: %v\n%s", err, out)
		}
	})
	if out, err := script("up"); err != nil {
		t.Fatalf("kube-deploy.sh up: %v\n%s", err, out)
	}
	url := "http://" + listen

	// Its service account may do what bothyd does in its namespace, and
	// nothing elsewhere.
	as := "--as=system:serviceaccount:" + ns + ":bothyd"
	for _, q := range []struct {
		verb, resource, where, want string
	}{
		{"create", "sandboxes.agents.x-k8s.io", ns, "yes"},
		{"delete", "pods", ns, "yes"},
		{"list", "secrets", ns, "no"},
		{"create", "pods", ns, "no"},
		{"get", "sandboxes.agents.x-k8s.io", "default", "no"},
		{"get", "secrets", "kube-system", "no"},
		{"list", "nodes", "", "no"},
	} {
		args := []string{"auth", "can-i", q.verb, q.resource, as}
		if q.where != "" {
			args = append(args, "-n", q.where)
		}
		out, _ := exec.Command(kubectl, args...).Output()
		if got := strings.TrimSpace(string(out)); got != q.want {
			t.Errorf("can bothyd %s %s in %q: %q, want %q", q.verb, q.resource, q.where, got, q.want)
		}
	}

	ctx := context.Background()
	c := api.NewClient(url, key)
	out, errOut, code := bothy(t, url, key, "create", "--label", "suite=kube-deploy")
	if code != 0 {
		t.Fatalf("bothy create: %d %s", code, errOut)
	}
	id := strings.TrimSpace(out)
	if got := kube("get", "sandboxes.agents.x-k8s.io", "-o", "name"); strings.Count(got, "sandbox.agents.x-k8s.io/") != 1 {
		t.Fatalf("Sandboxes in %s: %q", ns, got)
	}
	if out, _, code := bothy(t, url, key, "exec", id, "--", "sh", "-c", "echo $((6*7)); hostname"); code != 0 || out != "42\n"+id+"\n" {
		t.Fatalf("exec: %d %q", code, out)
	}
	if _, err := c.WriteFile(ctx, id, "/root/note", strings.NewReader("kept\n"), api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, _, code := bothy(t, url, key, "cat", id+":/root/note"); code != 0 || out != "kept\n" {
		t.Fatalf("cat: %d %q", code, out)
	}
	terminalAndPort(t, url, key, id, "served from inside")

	// Runs go to runners on the node's Docker engine.
	if out, e, code := bothy(t, url, key, "run", "bash", "-c", "echo from a runner; id -u"); code != 0 || out != "from a runner\n65534\n" {
		t.Fatalf("bothy run: %d %q %s", code, out, e)
	}

	snap, err := c.CreateSnapshot(ctx, id, api.CreateSnapshotRequest{Name: "deployed"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, id, api.ExecRequest{Shell: "echo changed > /root/note"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RestoreSandbox(ctx, id, snap.ID, "/root/note"); err != nil {
		t.Fatal(err)
	}
	fork, err := c.Fork(ctx, id, api.ForkRequest{Count: 1})
	if err != nil || len(fork.Sandboxes) != 1 {
		t.Fatalf("fork: %+v %v", fork, err)
	}
	for _, sb := range []string{id, fork.Sandboxes[0].ID} {
		if res, err := c.Exec(ctx, sb, api.ExecRequest{Shell: "cat /root/note"}); err != nil || res.Stdout != "kept\n" {
			t.Fatalf("%s after restore and fork: %+v %v", sb, res, err)
		}
	}

	// Its pod deleted, the StatefulSet starts another on the same volume:
	// it knows both sandboxes and reaches them.
	uid := kube("get", "pod", "bothyd-0", "-o", "jsonpath={.metadata.uid}")
	kube("delete", "pod", "bothyd-0", "--wait", "--timeout=5m")
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, _ := exec.Command(kubectl, "-n", ns, "get", "pod", "bothyd-0", "-o", "jsonpath={.metadata.uid}").Output()
		if again := strings.TrimSpace(string(out)); again != "" && again != uid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the StatefulSet started no pod in place of the deleted one")
		}
	}
	kube("wait", "pod/bothyd-0", "--for=condition=Ready", "--timeout=5m")
	list, err := c.ListSandboxes(ctx, api.ListOptions{})
	if err != nil || len(list.Sandboxes) != 2 {
		t.Fatalf("after the pod's restart: %+v %v", list, err)
	}
	for _, sb := range []string{id, fork.Sandboxes[0].ID} {
		if out, e, code := bothy(t, url, key, "exec", sb, "--", "cat", "/root/note"); code != 0 || out != "kept\n" {
			t.Fatalf("%s after the pod's restart: %d %q %s", sb, code, out, e)
		}
	}
	for _, sb := range []string{id, fork.Sandboxes[0].ID} {
		if err := c.DeleteSandbox(ctx, sb); err != nil {
			t.Fatal(err)
		}
	}
	if got := kube("get", "sandboxes.agents.x-k8s.io", "-o", "name"); got != "" {
		t.Fatalf("Sandboxes left in %s: %q", ns, got)
	}
}
