package kubernetes

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/bothy/bothy/agent/wire"
	"github.com/bothy/bothy/runtime"
)

// labelNetwork names the network a sandbox's pod is on ("none" for none).
const labelNetwork = "bothy.network"

// A network on the cluster is the pod network every pod is on, and a
// NetworkPolicy of its name that says what its pods may reach, for the
// clusters that enforce NetworkPolicy. spec.Bridge means nothing here.
func (k *Kubernetes) policy(spec runtime.NetworkSpec) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	udp := corev1.ProtocolUDP
	agentPort := intstr.FromInt32(wire.AgentPort)
	dns := intstr.FromInt32(53)
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: spec.Labels},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelNetwork: spec.Name}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			// bothy reaches each sandbox at its agent's port only (mutual
			// TLS); nothing else reaches in.
			Ingress: []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &agentPort}}}},
		},
	}
	if !spec.Isolated {
		np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
		return np
	}
	var except4, except6 []string
	for _, b := range spec.Blocked {
		if p, err := netip.ParsePrefix(b); err == nil && p.Addr().Is4() {
			except4 = append(except4, b)
		} else if err == nil {
			except6 = append(except6, b)
		}
	}
	to := []networkingv1.NetworkPolicyPeer{
		{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: except4}},
		{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: except6}},
	}
	for _, a := range spec.Allowed {
		to = append(to, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: a}})
	}
	np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{
		{To: to},
		// Names resolve through the cluster's resolver, wherever it is.
		{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
	}
	return np
}

// nonePolicy is the NetworkPolicy of the sandboxes without a network: no
// way out, and in only to the agent.
func (k *Kubernetes) nonePolicy() *networkingv1.NetworkPolicy {
	np := k.policy(runtime.NetworkSpec{Name: "none"})
	np.Name = "bothy-none"
	np.Spec.Egress = nil
	return np
}

// ensureNone makes the policy of the sandboxes without a network, once.
func (k *Kubernetes) ensureNone(ctx context.Context) error {
	k.netMu.Lock()
	made := k.noneMade
	k.netMu.Unlock()
	if made {
		return nil
	}
	if err := k.ensurePolicy(ctx, k.nonePolicy()); err != nil {
		return err
	}
	k.netMu.Lock()
	k.noneMade = true
	k.netMu.Unlock()
	return nil
}

// EnsureNetwork makes (or updates) the network's NetworkPolicy, and
// remembers its rules for the pods made on it.
func (k *Kubernetes) EnsureNetwork(ctx context.Context, spec runtime.NetworkSpec) error {
	if err := k.ensurePolicy(ctx, k.policy(spec)); err != nil {
		return err
	}
	k.netMu.Lock()
	k.networks[spec.Name] = spec
	k.netMu.Unlock()
	return nil
}

// guardArgs are the arguments of "bothy-agent init-pod" that install the
// rules of network (package agent/guard): none, or a network this
// process ensured.
func (k *Kubernetes) guardArgs(network string) ([]string, error) {
	// Each flag and its value are one word, an empty value too: the agent
	// of a pod with no init container splits them at spaces.
	args := []string{"--agent-port=" + strconv.Itoa(wire.AgentPort)}
	if network == "none" {
		return append(args, "--none"), nil
	}
	k.netMu.Lock()
	spec, ok := k.networks[network]
	k.netMu.Unlock()
	if !ok {
		return nil, cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("network %s not found", network))
	}
	if !spec.Isolated {
		return args, nil
	}
	// The node's addresses (each family's) come from the downward API,
	// expanded by the kubelet.
	return append(args, "--host=$("+wire.HostIPsEnv+")",
		"--block="+strings.Join(spec.Blocked, ","), "--allow="+strings.Join(spec.Allowed, ",")), nil
}

func (k *Kubernetes) ensurePolicy(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	c := k.core.NetworkingV1().NetworkPolicies(k.cfg.Namespace)
	_, err := c.Create(ctx, np, metav1.CreateOptions{})
	if err == nil || !cerrdefs.IsConflict(classify(err)) {
		return classify(err)
	}
	old, err := c.Get(ctx, np.Name, getOpts)
	if err != nil {
		return classify(err)
	}
	old.Labels, old.Spec = np.Labels, np.Spec
	_, err = c.Update(ctx, old, metav1.UpdateOptions{})
	return classify(err)
}

// RemoveNetwork removes the network's NetworkPolicy, unless a container is
// on the network.
func (k *Kubernetes) RemoveNetwork(ctx context.Context, name string) error {
	on, err := k.sandboxes().List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(map[string]string{labelNetwork: name}).String()})
	if err != nil {
		return classify(err)
	}
	for _, sb := range on.Items {
		if sb.DeletionTimestamp == nil {
			return cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("network %s has containers (%s)", name, sb.Name))
		}
	}
	return classify(k.core.NetworkingV1().NetworkPolicies(k.cfg.Namespace).Delete(ctx, name, metav1.DeleteOptions{}))
}

// Networks lists the networks that carry every label of filter.
func (k *Kubernetes) Networks(ctx context.Context, filter map[string]string) ([]string, error) {
	list, err := k.core.NetworkingV1().NetworkPolicies(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(filter).String()})
	if err != nil {
		return nil, classify(err)
	}
	var out []string
	for _, np := range list.Items {
		out = append(out, np.Name)
	}
	return out, nil
}
