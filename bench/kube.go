package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	extclient "sigs.k8s.io/agent-sandbox/clients/k8s/extensions/clientset/versioned"
	extv1 "sigs.k8s.io/agent-sandbox/extensions/api/v1beta1"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/runtime/docker"
)

// kubeSetup is the cluster the Kubernetes section runs on.
type kubeSetup struct {
	kubeconfig, registry, kubectl string
}

// benchKube measures bothy with its sandboxes on the cluster, each row
// beside its baseline on the same cluster in the same run: exec `true`
// against kubectl exec; a cold create to first exec against a bare Pod of
// the same image to Ready; a create served by bothy's warm sandbox pool
// against agent-sandbox's own SandboxClaim on a SandboxWarmPool to Ready.
// Then 100 idle sandboxes on the node, beside as many on the Docker
// runtime. Everything runs in a namespace of its own, deleted at the end.
func benchKube(ctx context.Context, bin, agentBin string, k kubeSetup, eng *docker.Docker, image, remote string, execN, createN int) ([]row, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	if err != nil {
		return nil, err
	}
	core, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	ext, err := extclient.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	nsObj, err := core.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bothy-bench-"}}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	ns := nsObj.Name
	defer core.CoreV1().Namespaces().Delete(context.WithoutCancel(ctx), ns, metav1.DeleteOptions{})

	sd, err := startBothy(bin, agentBin, image, "--pool-min-idle", "0", "--sandbox-pool", "default:2",
		"--runtime", "kubernetes", "--kubeconfig", k.kubeconfig, "--kube-namespace", ns, "--registry", k.registry)
	if err != nil {
		return nil, err
	}
	defer sd.stop()
	c := api.NewClient(sd.url, benchKey)
	execTrue := api.ExecRequest{Cmd: []string{"true"}}

	// exec `true`: REST against kubectl exec, into the same pod.
	sb, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, sd.logs.String())
	}
	defer c.DeleteSandbox(context.WithoutCancel(ctx), sb.ID)
	pods, err := core.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "bothy.id=" + sb.ID})
	if err != nil || len(pods.Items) != 1 {
		return nil, fmt.Errorf("the sandbox's pod: %v (%d)", err, len(pods.Items))
	}
	pod := pods.Items[0].Name
	var execOurs, execBase []time.Duration
	for i := range execN + 50 {
		t0 := time.Now()
		if res, err := c.Exec(ctx, sb.ID, execTrue); err != nil || res.ExitCode != 0 {
			return nil, fmt.Errorf("exec: %v %+v", err, res)
		}
		if i >= 50 {
			execOurs = append(execOurs, time.Since(t0))
		}
	}
	for i := range execN/10 + 2 {
		t0 := time.Now()
		cmd := exec.CommandContext(ctx, k.kubectl, "--kubeconfig", k.kubeconfig, "-n", ns, "exec", pod, "-c", "sandbox", "--", "true")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("kubectl exec: %v: %s", err, out)
		}
		if i >= 2 {
			execBase = append(execBase, time.Since(t0))
		}
	}

	// Cold create -> first exec, against a bare Pod of the same image ->
	// Ready, alternating. bothy's creates skip its pool: they ask for a
	// size it does not hold.
	var coldOurs, coldBase, coldInit []time.Duration
	for range createN {
		t0 := time.Now()
		s, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image, MemoryMB: 768}, "")
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, s.ID, execTrue); err != nil {
			return nil, err
		}
		coldOurs = append(coldOurs, time.Since(t0))
		if err := c.DeleteSandbox(ctx, s.ID); err != nil {
			return nil, err
		}
		d, err := barePod(ctx, core, ns, remote, false)
		if err != nil {
			return nil, err
		}
		coldBase = append(coldBase, d)
		// Where the difference goes: the same Pod with one init container
		// (as bothy's sandbox pods have) -> Ready.
		if d, err = barePod(ctx, core, ns, remote, true); err != nil {
			return nil, err
		}
		coldInit = append(coldInit, d)
	}
	fmt.Printf("kubernetes: a bare Pod -> Ready, p50 %s; the same Pod with one init container running `true`, p50 %s (the kubelet sees an init container end at its next relist, every second)\n",
		ms(pct(coldBase, 50)), ms(pct(coldInit, 50)))

	// A warm create (bothy's pool of two) -> first exec, against a
	// SandboxClaim on a SandboxWarmPool of two -> Ready, alternating.
	tmpl := &extv1.SandboxTemplate{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Spec: extv1.SandboxTemplateSpec{
		NetworkPolicyManagement: extv1.NetworkPolicyManagementUnmanaged,
	}}
	tmpl.Spec.PodTemplate.Spec = corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: remote, Command: []string{"sleep", "3600"}}}}
	if _, err := ext.ExtensionsV1beta1().SandboxTemplates(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	two := int32(2)
	if _, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Create(ctx, &extv1.SandboxWarmPool{ObjectMeta: metav1.ObjectMeta{Name: "bench"},
		Spec: extv1.SandboxWarmPoolSpec{Replicas: &two, TemplateRef: extv1.SandboxTemplateRef{Name: "bench"}}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	var warmOurs, warmBase []time.Duration
	for range createN {
		if err := waitPools(ctx, c, ext, ns); err != nil {
			return nil, err
		}
		t0 := time.Now()
		s, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image}, "")
		if err != nil {
			return nil, err
		}
		if _, err := c.Exec(ctx, s.ID, execTrue); err != nil {
			return nil, err
		}
		warmOurs = append(warmOurs, time.Since(t0))
		if err := c.DeleteSandbox(ctx, s.ID); err != nil {
			return nil, err
		}
		d, err := claim(ctx, ext, ns)
		if err != nil {
			return nil, err
		}
		warmBase = append(warmBase, d)
	}
	// 100 idle sandboxes on the one node, beside as many on the local
	// engine through a bothy of the Docker runtime, one after the other.
	if err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Delete(ctx, "bench", metav1.DeleteOptions{}); err != nil {
		return nil, err
	}
	kubeMiB, kubeGet, kubeExec, err := idleDensity(ctx, c, image, 100, 200)
	if err != nil {
		return nil, fmt.Errorf("100 idle sandboxes on the cluster: %w", err)
	}
	dd, err := startBothy(bin, agentBin, image, "--pool-min-idle", "0", "--sandbox-pool", "0")
	if err != nil {
		return nil, err
	}
	defer dd.stopAndClean(ctx, eng)
	dockMiB, dockGet, dockExec, err := idleDensity(ctx, api.NewClient(dd.url, benchKey), image, 100, 200)
	if err != nil {
		return nil, fmt.Errorf("100 idle sandboxes on the engine: %w", err)
	}
	fmt.Printf("kubernetes: host memory per idle sandbox among 100 (64 MiB limit each): %.1f MiB on the cluster, %.1f MiB on the Docker runtime (MemAvailable before and after)\n", kubeMiB, dockMiB)
	return []row{
		{name: "kubernetes: GET a sandbox among 100 idle (vs the Docker runtime among 100)", ours: kubeGet, base: dockGet, target: "p99 like the Docker runtime's"},
		{name: "kubernetes: exec `true` among 100 idle (vs the Docker runtime among 100)", ours: kubeExec, base: dockExec, target: "p99 like the Docker runtime's"},
		{name: "kubernetes: exec `true` (REST vs kubectl exec, same pod)", ours: execOurs, base: execBase, target: "p50 <= 0.1 x baseline"},
		{name: "kubernetes: create -> first exec, cold (vs a bare Pod of the image -> Ready)", ours: coldOurs, base: coldBase, target: "p50 <= 1.1 x baseline"},
		{name: "kubernetes: create -> first exec, warm pool (vs agent-sandbox SandboxClaim -> Ready)", ours: warmOurs, base: warmBase, target: "p50 <= 0.5 x baseline"},
	}, nil
}

// barePod makes a Pod of image in ns that sleeps (after an init container
// that runs `true`, with init), and answers how long it took to be Ready; it
// deletes it after.
func barePod(ctx context.Context, core kubernetes.Interface, ns, image string, init bool) (time.Duration, error) {
	zero := int64(0)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "bare-"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: &zero, RestartPolicy: corev1.RestartPolicyNever,
		Containers: []corev1.Container{{Name: "c", Image: image, Command: []string{"sleep", "3600"}}},
	}}
	if init {
		p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: image, Command: []string{"true"}}}
	}
	t0 := time.Now()
	made, err := core.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	defer core.CoreV1().Pods(ns).Delete(context.WithoutCancel(ctx), made.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	w, err := core.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", made.Name).String(), ResourceVersion: made.ResourceVersion})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if pod, ok := ev.Object.(*corev1.Pod); ok && ev.Type != watch.Deleted {
			for _, cond := range pod.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					return time.Since(t0), nil
				}
			}
		}
	}
	return 0, fmt.Errorf("the bare pod's watch ended before it was Ready")
}

// claim claims a sandbox from the pool "bench" and answers how long it took
// to be Ready; it deletes the claim after.
func claim(ctx context.Context, ext extclient.Interface, ns string) (time.Duration, error) {
	cl := &extv1.SandboxClaim{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}, Spec: extv1.SandboxClaimSpec{WarmPoolRef: extv1.SandboxWarmPoolRef{Name: "bench"}}}
	t0 := time.Now()
	made, err := ext.ExtensionsV1beta1().SandboxClaims(ns).Create(ctx, cl, metav1.CreateOptions{})
	if err != nil {
		return 0, err
	}
	defer ext.ExtensionsV1beta1().SandboxClaims(ns).Delete(context.WithoutCancel(ctx), made.Name, metav1.DeleteOptions{})
	w, err := ext.ExtensionsV1beta1().SandboxClaims(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", made.Name).String(), ResourceVersion: made.ResourceVersion})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		if c, ok := ev.Object.(*extv1.SandboxClaim); ok {
			for _, cond := range c.Status.Conditions {
				if cond.Type == "Ready" && cond.Status == metav1.ConditionTrue {
					return time.Since(t0), nil
				}
			}
		}
	}
	return 0, fmt.Errorf("the claim's watch ended before it was Ready")
}

// waitPools waits (3 minutes at most) until bothy's pool and the warm
// pool both hold two ready sandboxes.
func waitPools(ctx context.Context, c *api.Client, ext extclient.Interface, ns string) error {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		p, err := ext.ExtensionsV1beta1().SandboxWarmPools(ns).Get(ctx, "bench", metav1.GetOptions{})
		if err != nil {
			return err
		}
		list, err := c.Pools(ctx)
		if err != nil {
			return err
		}
		if p.Status.ReadyReplicas >= 2 && len(list.SandboxPools) == 1 && list.SandboxPools[0].Ready >= 2 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("the pools did not fill within 3 minutes")
}

// kubeFromEnv is the cluster of scripts/kube.sh env, if its variables are set.
func kubeFromEnv() (kubeSetup, bool) {
	k := kubeSetup{kubeconfig: os.Getenv("BOTHY_KUBECONFIG"), registry: os.Getenv("BOTHY_KUBE_REGISTRY"), kubectl: os.Getenv("BOTHY_KUBECTL")}
	if k.kubectl == "" {
		k.kubectl = "kubectl"
	}
	return k, k.kubeconfig != "" && k.registry != ""
}

// idleDensity holds n idle sandboxes of image (64 MiB each) made through
// c, 4 at a time, and answers the host memory each costs (MemAvailable
// before and after) and the latency of a GET of one of them and of an exec
// in one of them among them all; then it deletes them.
func idleDensity(ctx context.Context, c *api.Client, image string, n, probes int) (perMiB float64, get, execs []time.Duration, err error) {
	before := memAvailableMiB()
	ids, _, err := concurrently(n, 4, func() (string, error) {
		s, err := c.CreateSandbox(ctx, api.CreateSandboxRequest{Image: image, MemoryMB: 64}, "")
		return s.ID, err
	})
	defer func() {
		for _, id := range ids {
			_ = c.DeleteSandbox(context.WithoutCancel(ctx), id)
		}
	}()
	if err != nil {
		return 0, nil, nil, err
	}
	perMiB = (before - memAvailableMiB()) / float64(n)
	execTrue := api.ExecRequest{Cmd: []string{"true"}}
	for i := range probes {
		id := ids[i%len(ids)]
		t0 := time.Now()
		if _, err := c.GetSandbox(ctx, id); err != nil {
			return 0, nil, nil, err
		}
		get = append(get, time.Since(t0))
		t0 = time.Now()
		if res, err := c.Exec(ctx, id, execTrue); err != nil || res.ExitCode != 0 {
			return 0, nil, nil, fmt.Errorf("exec: %v %+v", err, res)
		}
		execs = append(execs, time.Since(t0))
	}
	return perMiB, get, execs, nil
}
