// Package kubernetes runs bothy's containers on a Kubernetes cluster, as
// agent-sandbox Sandbox objects (agents.x-k8s.io/v1beta1). It is the one
// package that imports client-go; it speaks the same neutral types as
// runtime/docker and passes the same conformance suite.
//
// What maps to what:
//   - a container is a Sandbox, named "bothy-" and random hex (its ID); the
//     name bothy gives it is an annotation, found by a hash label;
//   - created and stopped are the Sandbox suspended (no pod); started is the
//     Sandbox running, its pod Running; a pod that ended is exited, with its
//     container's exit code and OOM kill;
//   - bind mounts become objects of the sandbox's own, owned by it: the agent
//     binary is in the image bothy publishes (WithAgent), or comes from the
//     agent image through an init container and an emptyDir, and the files of a mounted directory or file (the agent's
//     token and credentials, /etc/hosts) become a Secret;
//   - a network is a NetworkPolicy for clusters that enforce one.
//
// A pod cannot be paused: Pause and Unpause answer not implemented.
package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	sandboxclient "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned"

	"github.com/bothy/bothy/runtime"
)

// Config says which cluster and namespace bothy's sandboxes live in.
type Config struct {
	// Kubeconfig is the kubeconfig file; empty: the in-cluster config.
	Kubeconfig string
	// Namespace holds every object bothy makes.
	Namespace string
	// AgentImage holds the agent binary at wire.BinaryPath. A pod whose
	// image does not carry the agent (WithAgent) has an init container of
	// it, which installs the pod's network rules and copies the agent in.
	AgentImage string
	// WithAgent, when set, is where the cluster pulls the image bothy names
	// ref with the agent on top, or "" where there is none: the agent then
	// installs the rules itself, and a pod starts with no init container.
	WithAgent func(ctx context.Context, ref string) (string, error)
	// RuntimeClassName, when set, is every sandbox pod's runtime class
	// (gVisor, Kata).
	RuntimeClassName string
	// UserNS runs every sandbox pod in a user namespace of its own
	// (hostUsers: false), which the cluster's nodes must support.
	UserNS bool
	// ImageRef is where the cluster pulls the image bothy names ref
	// (its registry's copy); nil or "": as named.
	ImageRef func(ref string) string
	// StartTimeout bounds a start: the pod scheduled, its image pulled,
	// its container running. Default 5 minutes.
	StartTimeout time.Duration
}

// Kubernetes is the runtime over one namespace of a cluster.
type Kubernetes struct {
	cfg  Config
	core kubernetes.Interface
	sbx  sandboxclient.Interface
	log  *slog.Logger

	// names serialises the creates and renames of this process, so that
	// two containers never take one name.
	names sync.Mutex

	// networks are the networks ensured, by name; noneMade says the
	// policy of the sandboxes without one is made.
	netMu    sync.Mutex
	networks map[string]runtime.NetworkSpec
	noneMade bool

	// written is the digest of each mount Secret's data as this process
	// last wrote it, by Secret name: a start rewrites only what changed.
	written sync.Map
	// fresh holds the Sandbox of each container this process made and has
	// not started yet, by ID.
	fresh sync.Map
}

// New connects to the cluster of cfg and checks that its namespace exists.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Kubernetes, error) {
	if cfg.Namespace == "" {
		return nil, fmt.Errorf("kubernetes runtime: a namespace is required")
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 5 * time.Minute
	}
	rc, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.QPS, rc.Burst = 200, 400
	core, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	sbx, err := sandboxclient.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	k := &Kubernetes{cfg: cfg, core: core, sbx: sbx, log: log.With("component", "kubernetes"), networks: map[string]runtime.NetworkSpec{}}
	// A service account bound only in its namespace (deploy/kubernetes)
	// may not read the namespace itself: then reading its Sandboxes proves
	// the access (in a namespace that is not there it finds none, and the
	// first create says so).
	_, err = core.CoreV1().Namespaces().Get(ctx, cfg.Namespace, getOpts)
	if apierrors.IsForbidden(err) {
		_, err = k.sandboxes().List(ctx, metav1.ListOptions{Limit: 1})
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes runtime: namespace %s: %w", cfg.Namespace, classify(err))
	}
	if cfg.UserNS {
		if err := k.checkUserNS(ctx); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// checkUserNS refuses user namespaces where no node's runtime says it
// supports them (a kubelet reports it per runtime handler): there every
// sandbox pod would wait for ever, its sandbox refused by the runtime. A
// service account that may not list nodes skips the check.
func (k *Kubernetes) checkUserNS(ctx context.Context) error {
	nodes, err := k.core.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if apierrors.IsForbidden(err) {
		k.log.Warn("cannot list nodes: whether they support user namespaces (-kube-userns) is not checked", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("kubernetes runtime: list nodes: %w", classify(err))
	}
	for _, n := range nodes.Items {
		for _, h := range n.Status.RuntimeHandlers {
			if h.Features != nil && h.Features.UserNamespaces != nil && *h.Features.UserNamespaces {
				return nil
			}
		}
	}
	return cerrdefs.ErrFailedPrecondition.WithMessage("kubernetes runtime: user namespaces asked for (hostUsers: false), but no node's container runtime supports them (no kubelet reports userNamespaces for any runtime handler; containerd 1.x cannot)")
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes runtime: no kubeconfig given and not in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubernetes runtime: kubeconfig %s: %w", kubeconfig, err)
	}
	return rc, nil
}

// Info reports the cluster's version. Disk limits are the pods'
// ephemeral-storage limits, which the kubelet enforces by eviction.
func (k *Kubernetes) Info(ctx context.Context) (runtime.EngineInfo, error) {
	v, err := k.core.Discovery().ServerVersion()
	if err != nil {
		return runtime.EngineInfo{}, classify(err)
	}
	if err := ctx.Err(); err != nil {
		return runtime.EngineInfo{}, err
	}
	return runtime.EngineInfo{
		Version: v.GitVersion, APIVersion: v.Major + "." + v.Minor,
		UsernsRemap: k.cfg.UserNS, StorageDriver: "kubernetes",
		DiskLimits: "ephemeral-storage limit",
	}, nil
}

// Namespace is the namespace bothy's objects live in.
func (k *Kubernetes) Namespace() string { return k.cfg.Namespace }

// Core is the client of the cluster's core API (for tests and tools).
func (k *Kubernetes) Core() kubernetes.Interface { return k.core }

// pod is the pod of sandbox name, nil when it has none.
func (k *Kubernetes) pod(ctx context.Context, name string) (*corev1.Pod, error) {
	p, err := k.core.CoreV1().Pods(k.cfg.Namespace).Get(ctx, name, getOpts)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, classify(err)
	}
	return p, nil
}

// StopLosesFiles is true: a stopped sandbox's pod is deleted (agent-sandbox's
// suspend), and its filesystem with it; bothy keeps the files as a
// snapshot, through the registry, and starts the sandbox from that.
func (k *Kubernetes) StopLosesFiles() bool { return true }

// CanPause is false: see errNoPause.
func (k *Kubernetes) CanPause() bool { return false }
