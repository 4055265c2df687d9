package kubernetes_test

import (
	"context"
	"os"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/agent-sandbox/clients/go/sandbox"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/orchestrator"
	"github.com/bothy/bothy/runtime"
)

// TestKubeAgentSandboxClient: bothy's agent is a runtime of plain
// agent-sandbox. A SandboxTemplate runs it (KEPTemplate) behind a warm
// pool, and agent-sandbox's own Go client, unchanged, claims a sandbox
// from the pool, runs commands and writes and reads files through the
// standard interface (KEP-539.2), and gives the claim back.
func TestKubeAgentSandboxClient(t *testing.T) {
	k, _ := withCluster(t)
	ctx := context.Background()
	rc, err := clientcmd.BuildConfigFromFlags("", os.Getenv("BOTHY_KUBECONFIG"))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := extclient.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ns := k.Namespace()
	if err := k.EnsureNetwork(ctx, runtime.NetworkSpec{Name: "kep-net", Isolated: true, Blocked: orchestrator.BlockedRanges}); err != nil {
		t.Fatal(err)
	}
	tmpl, err := k.KEPTemplate("bothy-kep", images.Busybox, "kep-net", orchestrator.Capabilities)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	one := int32(1)
	pool := &extv1.SandboxWarmPool{ObjectMeta: metav1.ObjectMeta{Name: "bothy-kep"},
		Spec: extv1.SandboxWarmPoolSpec{Replicas: &one, TemplateRef: extv1.SandboxTemplateRef{Name: "bothy-kep"}}}
	if _, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(ctx, pool, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	sb, err := sandbox.New(ctx, sandbox.Options{
		WarmPoolName: "bothy-kep", Namespace: ns, Runtime: sandbox.RuntimeSandboxd,
		RestConfig: rc, Quiet: true, SandboxReadyTimeout: 3 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sb.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	}()
	res, err := sb.Run(ctx, "echo $((6*7)); id -u")
	if err != nil || res.ExitCode != 0 || res.Stdout != "42\n0\n" {
		t.Fatalf("run: %+v %v", res, err)
	}
	if res, err := sb.Run(ctx, "exit 3"); err != nil || res.ExitCode != 3 {
		t.Fatalf("run exit 3: %+v %v", res, err)
	}
	if err := sb.Write(ctx, "notes/hello.txt", []byte("from agent-sandbox's client\n")); err != nil {
		t.Fatal(err)
	}
	got, err := sb.Read(ctx, "notes/hello.txt")
	if err != nil || string(got) != "from agent-sandbox's client\n" {
		t.Fatalf("read: %q %v", got, err)
	}
	// The file is where the standard interface keeps the sandbox's files.
	if res, err := sb.Run(ctx, "cat /workspace/notes/hello.txt"); err != nil || res.Stdout != "from agent-sandbox's client\n" {
		t.Fatalf("the written file in the sandbox: %+v %v", res, err)
	}
}
