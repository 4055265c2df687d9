package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bothy/bothy/runtime/kubernetes"
)

// Kube is the Kubernetes runtime on the test cluster (BOTHY_KUBECONFIG, as
// `scripts/kube.sh env` prints it), in a namespace of the test's own that
// is deleted, and waited for, at its end. Without a cluster it fails the
// test when BOTHY_REQUIRE_KUBE is set and skips it otherwise.
func Kube(t testing.TB, cfg kubernetes.Config) *kubernetes.Kubernetes {
	t.Helper()
	kubeconfig := needKube(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg.Kubeconfig, cfg.UserNS = kubeconfig, os.Getenv("BOTHY_KUBE_USERNS") != ""
	cfg.Namespace = "default"
	k, err := kubernetes.New(ctx, cfg, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bothy-test-"}}
	made, err := k.Core().CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		nss := k.Core().CoreV1().Namespaces()
		if err := nss.Delete(ctx, made.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete the test's namespace: %v", err)
			return
		}
		// Its pods end before it goes: wait, so that nothing of the test's
		// outlives it.
		for ctx.Err() == nil {
			if _, err := nss.Get(ctx, made.Name, metav1.GetOptions{}); err != nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		t.Errorf("the test's namespace %s was not gone within 3 minutes", made.Name)
	})
	cfg.Namespace = made.Name
	k, err = kubernetes.New(ctx, cfg, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// KubeRegistry is the test cluster's registry (BOTHY_KUBE_REGISTRY), where
// its node pulls the images bothy publishes.
func KubeRegistry(t testing.TB) string {
	t.Helper()
	needKube(t)
	r := os.Getenv("BOTHY_KUBE_REGISTRY")
	if r == "" {
		t.Fatal("BOTHY_KUBE_REGISTRY is not set (scripts/kube.sh env prints it)")
	}
	return r
}

// needKube is the test cluster's kubeconfig. Without a cluster it fails the
// test when BOTHY_REQUIRE_KUBE is set and skips it otherwise; -short skips
// it.
func needKube(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: no cluster-backed tests")
	}
	kubeconfig := os.Getenv("BOTHY_KUBECONFIG")
	if kubeconfig == "" {
		if os.Getenv("BOTHY_REQUIRE_KUBE") != "" {
			t.Fatal("a cluster is required: BOTHY_KUBECONFIG is not set (make test-kube sets it)")
		}
		t.Skip("no cluster: BOTHY_KUBECONFIG is not set")
	}
	return kubeconfig
}
