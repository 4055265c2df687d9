package kubernetes_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/runtime"
	"github.com/bothy/bothy/runtime/conformance"
	"github.com/bothy/bothy/runtime/kubernetes"
)

var _ conformance.Engine = (*kubernetes.Kubernetes)(nil)

// withCluster is the runtime on the test cluster, in a namespace of the
// test's own, with the busybox image and the agent image in the cluster's
// registry, as bothyd publishes them.
func withCluster(t *testing.T) (*kubernetes.Kubernetes, string) {
	t.Helper()
	d := testenv.Docker(t)
	data := testenv.DataDir(t)
	b := images.New(d, testenv.Logger(t), "", filepath.Join(data, "build"))
	t.Cleanup(b.Close)
	b.UseRegistry(testenv.KubeRegistry(t), images.RegistryAccess{})
	ctx := context.Background()
	if _, err := b.Ensure(ctx, images.Busybox, nil); err != nil {
		t.Fatal(err)
	}
	agent, err := b.AgentImage(ctx, testenv.AgentBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.ImageRemove(context.Background(), agent) })
	for _, ref := range []string{images.Busybox, agent} {
		if err := b.Publish(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	k := testenv.Kube(t, kubernetes.Config{AgentImage: b.RemoteRef(agent), ImageRef: b.RemoteRef})
	return k, data
}

func TestKubernetesPassesTheConformanceSuite(t *testing.T) {
	k, data := withCluster(t)
	ctx := context.Background()
	instance := "conf-" + filepath.Base(data)
	conformance.Run(t, conformance.Setup{Engine: k, Image: images.Busybox, Instance: instance, Bridge: "unused",
		NoPause: true, LateImageCheck: true})
	left, err := k.List(ctx, map[string]string{runtime.LabelInstance: instance})
	if err != nil {
		t.Fatal(err)
	}
	nets, err := k.Networks(ctx, map[string]string{runtime.LabelInstance: instance})
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 || len(nets) > 0 {
		t.Fatalf("left behind: %d containers, networks %v", len(left), nets)
	}
}

// TestKubeUserNamespacesNeedTheNodes: user namespaces asked for on a
// cluster whose nodes report no support for them (this one's containerd
// 1.6 reports none) are refused when the runtime starts, with a clear
// error, rather than leaving every sandbox pod waiting for ever; where a
// node supports them, the runtime starts.
func TestKubeUserNamespacesNeedTheNodes(t *testing.T) {
	k := testenv.Kube(t, kubernetes.Config{})
	ctx := context.Background()
	nodes, err := k.Core().CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	supported := false
	for _, n := range nodes.Items {
		for _, h := range n.Status.RuntimeHandlers {
			supported = supported || h.Features != nil && h.Features.UserNamespaces != nil && *h.Features.UserNamespaces
		}
	}
	_, err = kubernetes.New(ctx, kubernetes.Config{Kubeconfig: os.Getenv("BOTHY_KUBECONFIG"), Namespace: "default", UserNS: true}, testenv.Logger(t))
	switch {
	case supported && err != nil:
		t.Fatalf("the nodes support user namespaces, yet: %v", err)
	case !supported && (!cerrdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "user namespaces")):
		t.Fatalf("no node supports user namespaces: %v, want a failed precondition that says so", err)
	}
}
