package kubernetes

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sandboxv1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	extv1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/bothy/bothy/agent/wire"
)

// KEPTemplate is a SandboxTemplate of plain agent-sandbox whose sandboxes
// run bothy's agent as their KEP-539.2 runtime ("bothy-agent kep": files
// and health on 127.0.0.1:8080, processes over gRPC on 127.0.0.1:9090) in
// image, which needs /bin/sh for commands. The agent is copied in by the
// same init container as bothy's own pods, which also installs the same
// network rules (the way in is a port-forward, on the pod's loopback).
// Root in them keeps capAdd of its capabilities. Anything that speaks the
// standard interface drives its sandboxes,
// agent-sandbox's own Go client among them.
func (k *Kubernetes) KEPTemplate(name, image, network string, capAdd []string) (*extv1.SandboxTemplate, error) {
	no := false
	args, err := k.guardArgs(network)
	if err != nil {
		return nil, err
	}
	vol, install, in, out := agentCopy()
	return &extv1.SandboxTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: extv1.SandboxTemplateSpec{
			// Its way in is a port-forward, which a policy of pod
			// addresses does not see.
			NetworkPolicyManagement: extv1.NetworkPolicyManagementUnmanaged,
			SandboxBlueprint: sandboxv1.SandboxBlueprint{PodTemplate: sandboxv1.PodTemplate{Spec: corev1.PodSpec{
				AutomountServiceAccountToken: &no,
				EnableServiceLinks:           &no,
				SecurityContext:              &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
				Volumes:                      []corev1.Volume{vol},
				InitContainers:               []corev1.Container{k.initContainer(append(args, install...), []corev1.VolumeMount{in})},
				Containers: []corev1.Container{{
					Name: containerName, Image: k.imageRef(image), ImagePullPolicy: corev1.PullIfNotPresent,
					Command: []string{wire.BinaryPath, "kep"},
					// Ready once its services listen, which agent-sandbox's
					// client waits for before its first call. A startup
					// probe: it stops once it succeeds (a pod without a
					// readiness probe is ready from then on), and gives the
					// agent two minutes.
					StartupProbe: &corev1.Probe{
						ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{wire.BinaryPath, "kep-ready"}}},
						PeriodSeconds: 1, TimeoutSeconds: 5, FailureThreshold: 120,
					},
					VolumeMounts: []corev1.VolumeMount{out},
					SecurityContext: &corev1.SecurityContext{
						Privileged: &no, AllowPrivilegeEscalation: &no,
						Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: capabilities(capAdd)},
					},
				}},
			}}},
		},
	}, nil
}
