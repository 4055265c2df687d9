package kubernetes

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	sandboxv1 "sigs.k8s.io/agent-sandbox/api/v1beta1"
	sandboxtyped "sigs.k8s.io/agent-sandbox/clients/k8s/clientset/versioned/typed/api/v1beta1"

	"github.com/bothy/bothy/runtime"
)

// errNoPause is the answer to a pause: a pod's processes cannot be frozen
// through the Kubernetes API.
var errNoPause = cerrdefs.ErrNotImplemented.WithMessage("the kubernetes runtime cannot pause a sandbox: Kubernetes has no pause of a pod; stop it instead")

func nameHash(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:16])
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "bothy-" + hex.EncodeToString(b)
}

func (k *Kubernetes) sandboxes() sandboxtyped.SandboxInterface {
	return k.sbx.AgentsV1beta1().Sandboxes(k.cfg.Namespace)
}

// Create makes a Sandbox, suspended, and the Secrets of its mounts.
func (k *Kubernetes) Create(ctx context.Context, spec runtime.Spec) (string, error) {
	if spec.Name != "" {
		k.names.Lock()
		defer k.names.Unlock()
		if _, err := k.byName(ctx, spec.Name); err == nil {
			return "", cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("the name %s is in use", spec.Name))
		} else if !cerrdefs.IsNotFound(err) {
			return "", err
		}
	}
	id := newID()
	var carrier string
	if k.cfg.WithAgent != nil && carries(spec) {
		var err error
		if carrier, err = k.cfg.WithAgent(ctx, spec.Image); err != nil {
			// The init container's way is as safe, only slower.
			k.log.Warn("no copy of the image with the agent: its pod copies the agent in", "image", spec.Image, "err", err)
			carrier = ""
		}
	}
	ps, files, err := k.podSpec(spec, id, carrier)
	if err != nil {
		return "", err
	}
	secrets := make([]map[string][]byte, len(files))
	for i, f := range files {
		if secrets[i], err = secretData(f); err != nil {
			return "", err
		}
	}
	podLabels := map[string]string{}
	for key, v := range spec.Labels {
		podLabels[key] = v
	}
	sbLabels := map[string]string{}
	for key, v := range spec.Labels {
		sbLabels[key] = v
	}
	if spec.Network != "" {
		podLabels[labelNetwork], sbLabels[labelNetwork] = spec.Network, spec.Network
	}
	if spec.Network == "none" {
		if err := k.ensureNone(ctx); err != nil {
			return "", err
		}
	}
	ann := map[string]string{annMounts: encodeMounts(files), annImage: spec.Image}
	if spec.Name != "" {
		sbLabels[labelName] = nameHash(spec.Name)
		ann[annName] = spec.Name
	}
	sb := &sandboxv1.Sandbox{
		ObjectMeta: metav1.ObjectMeta{Name: id, Labels: sbLabels, Annotations: ann},
		Spec: sandboxv1.SandboxSpec{
			SandboxBlueprint: sandboxv1.SandboxBlueprint{PodTemplate: sandboxv1.PodTemplate{
				Spec: ps, ObjectMeta: sandboxv1.PodMetadata{Labels: podLabels},
			}},
			OperatingMode: sandboxv1.SandboxOperatingModeSuspended,
		},
	}
	made, err := k.sandboxes().Create(ctx, sb, metav1.CreateOptions{})
	if err != nil {
		return "", classify(err)
	}
	owner := []metav1.OwnerReference{{APIVersion: sandboxv1.GroupVersion.String(), Kind: "Sandbox", Name: id, UID: made.UID}}
	var g errgroup.Group
	for i, f := range files {
		g.Go(func() error {
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: id + "-" + f.Key, Labels: spec.Labels, OwnerReferences: owner}, Data: secrets[i]}
			_, err := k.core.CoreV1().Secrets(k.cfg.Namespace).Create(ctx, s, metav1.CreateOptions{})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		_ = k.Remove(context.WithoutCancel(ctx), id)
		return "", classify(err)
	}
	for i, f := range files {
		k.written.Store(id+"-"+f.Key, digest(secrets[i]))
	}
	k.fresh.Store(id, made)
	return id, nil
}

// byName is the Sandbox bothy named name, or whose ID is name.
func (k *Kubernetes) byName(ctx context.Context, name string) (*sandboxv1.Sandbox, error) {
	if strings.HasPrefix(name, "bothy-") {
		sb, err := k.sandboxes().Get(ctx, name, getOpts)
		if err == nil && sb.DeletionTimestamp == nil {
			return sb, nil
		}
		if err != nil && !isNotFound(err) {
			return nil, classify(err)
		}
	}
	list, err := k.sandboxes().List(ctx, metav1.ListOptions{LabelSelector: labelName + "=" + nameHash(name)})
	if err != nil {
		return nil, classify(err)
	}
	for i := range list.Items {
		if sb := &list.Items[i]; sb.Annotations[annName] == name && sb.DeletionTimestamp == nil {
			return sb, nil
		}
	}
	return nil, cerrdefs.ErrNotFound.WithMessage("no container " + name)
}

// Inspect says what the cluster says of a container, by ID or name.
func (k *Kubernetes) Inspect(ctx context.Context, ref string) (runtime.Container, error) {
	sb, err := k.byName(ctx, ref)
	if err != nil {
		return runtime.Container{}, err
	}
	pod, err := k.pod(ctx, sb.Name)
	if err != nil {
		return runtime.Container{}, err
	}
	return containerOf(sb, pod), nil
}

// containerOf is the container that Sandbox sb and its pod (nil: none) are.
func containerOf(sb *sandboxv1.Sandbox, pod *corev1.Pod) runtime.Container {
	c := runtime.Container{ID: sb.Name, Name: sb.Annotations[annName], Labels: sb.Labels, Created: sb.CreationTimestamp.Time}
	c.Image = sb.Annotations[annImage]
	running := sb.Spec.OperatingMode != sandboxv1.SandboxOperatingModeSuspended
	switch {
	case pod == nil && !running && sb.Annotations[annStarted] == "":
		c.State = runtime.StateCreated
	case pod == nil && !running, pod != nil && !running:
		c.State = runtime.StateExited
	case pod == nil, pod.DeletionTimestamp != nil, pod.Status.Phase == corev1.PodPending:
		// Asked to run, and on its way (or on its way out, to be made
		// again: a start of an ended pod).
		c.State = runtime.StateRestarting
	case pod.Status.Phase == corev1.PodRunning:
		c.State = runtime.StateRunning
		// Its filesystem is the image's layers, unpacked whenever the node
		// pulled them, under a layer of its own made as it started: what
		// changed in it changed since then.
		if r := runningState(pod); r != nil {
			c.Created = r.StartedAt.Time
		}
		c.ControlAddr = pod.Status.PodIP
		if sb.Labels[labelNetwork] != "none" {
			c.Addr = c.ControlAddr
		}
		if t := terminated(pod); t != nil {
			c.State, c.Addr, c.ControlAddr = runtime.StateExited, "", ""
			c.ExitCode, c.OOMKilled = int(t.ExitCode), t.Reason == "OOMKilled"
		}
	default: // Succeeded, Failed, Unknown
		c.State = runtime.StateExited
		if t := terminated(pod); t != nil {
			c.ExitCode, c.OOMKilled = int(t.ExitCode), t.Reason == "OOMKilled"
		} else if pod.Status.Phase == corev1.PodFailed {
			c.ExitCode = 1
		}
	}
	return c
}

// runningState is the sandbox container's run, nil when it does not run.
func runningState(pod *corev1.Pod) *corev1.ContainerStateRunning {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == containerName {
			return cs.State.Running
		}
	}
	return nil
}

// terminated is the sandbox container's end, nil while it has not ended.
func terminated(pod *corev1.Pod) *corev1.ContainerStateTerminated {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == containerName {
			return cs.State.Terminated
		}
	}
	return nil
}

// List lists the containers that carry every label of filter.
func (k *Kubernetes) List(ctx context.Context, filter map[string]string) ([]runtime.Container, error) {
	sel := labels.SelectorFromSet(filter).String()
	sbs, err := k.sandboxes().List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, classify(err)
	}
	pods, err := k.core.CoreV1().Pods(k.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, classify(err)
	}
	byName := map[string]*corev1.Pod{}
	for i := range pods.Items {
		byName[pods.Items[i].Name] = &pods.Items[i]
	}
	out := make([]runtime.Container, 0, len(sbs.Items))
	for i := range sbs.Items {
		if sb := &sbs.Items[i]; sb.DeletionTimestamp == nil {
			out = append(out, containerOf(sb, ownedPod(byName[sb.Name], sb)))
		}
	}
	return out, nil
}

// ownedPod is pod when Sandbox sb owns it.
func ownedPod(pod *corev1.Pod, sb *sandboxv1.Sandbox) *corev1.Pod {
	if pod == nil {
		return nil
	}
	if ref := metav1.GetControllerOf(pod); ref == nil || ref.UID != sb.UID {
		return nil
	}
	return pod
}

// Start runs a container: its Sandbox asked to run, and its pod Running. A
// container whose pod ended gets a new pod.
func (k *Kubernetes) Start(ctx context.Context, id string) error {
	// A container this process made and has not started has no pod yet,
	// and the cluster need not be asked what it is.
	made, fresh := k.fresh.LoadAndDelete(id)
	sb, _ := made.(*sandboxv1.Sandbox)
	if !fresh {
		var err error
		if sb, err = k.byName(ctx, id); err != nil {
			return err
		}
	}
	if sb.Spec.OperatingMode == sandboxv1.SandboxOperatingModeSuspended {
		if err := k.refreshSecrets(ctx, sb); err != nil {
			return err
		}
		// Wait for the pod of the last run to go: it has the name of the
		// next one.
		if !fresh {
			if err := k.waitPodGoneWithin(ctx, sb.Name, podGoneGrace); err != nil {
				return err
			}
		}
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:"true"}},"spec":{"operatingMode":%q}}`, annStarted, sandboxv1.SandboxOperatingModeRunning)
		if _, err := k.sandboxes().Patch(ctx, sb.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return classify(err)
		}
	} else if pod, err := k.pod(ctx, sb.Name); err != nil {
		return err
	} else if pod != nil && (pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || terminated(pod) != nil) {
		// An ended pod is not made again by the controller: delete it,
		// and the controller makes a new one.
		if err := k.deletePod(ctx, pod, 0); err != nil {
			return err
		}
		if err := k.waitPodGoneWithin(ctx, sb.Name, podGoneGrace); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, k.cfg.StartTimeout)
	defer cancel()
	if err := k.waitRunning(wctx, sb.Name); err != nil {
		// A start that failed leaves the container stopped, not trying.
		k.suspend(context.WithoutCancel(ctx), sb.Name, 0)
		return err
	}
	return nil
}

// refreshSecrets writes the current files of sb's mounts into their Secrets,
// those whose files changed since this process last wrote them (all of them
// after a restart), at once.
func (k *Kubernetes) refreshSecrets(ctx context.Context, sb *sandboxv1.Sandbox) error {
	files, err := decodeMounts(sb.Annotations[annMounts])
	if err != nil {
		return fmt.Errorf("the mounts of %s: %w", sb.Name, err)
	}
	var g errgroup.Group
	for _, f := range files {
		data, err := secretData(f)
		if err != nil {
			return err
		}
		name, sum := sb.Name+"-"+f.Key, digest(data)
		if was, ok := k.written.Load(name); ok && was.([sha256.Size]byte) == sum {
			continue
		}
		g.Go(func() error {
			secrets := k.core.CoreV1().Secrets(k.cfg.Namespace)
			s, err := secrets.Get(ctx, name, getOpts)
			if err != nil {
				return classify(err)
			}
			s.Data = data
			if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				return classify(err)
			}
			k.written.Store(name, sum)
			return nil
		})
	}
	return g.Wait()
}

// digest is the SHA-256 of a Secret's data, its keys in order.
func digest(data map[string][]byte) [sha256.Size]byte {
	h := sha256.New()
	for _, key := range slices.Sorted(maps.Keys(data)) {
		fmt.Fprintf(h, "%d:%s%d:", len(key), key, len(data[key]))
		h.Write(data[key])
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// startFailure says why a pod that is not running will not run; "" while
// it may yet.
func startFailure(pod *corev1.Pod) error {
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName":
			return cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("image %s: %s: %s", cs.Image, w.Reason, w.Message))
		case "CreateContainerConfigError", "CreateContainerError", "RunContainerError":
			return cerrdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("container %s: %s: %s", cs.Name, w.Reason, w.Message))
		}
	}
	for _, c := range pod.Status.Conditions {
		// A pod no node has room for is said so now, not after the start
		// timeout.
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return cerrdefs.ErrUnavailable.WithMessage("the cluster has no room for the sandbox: " + c.Message)
		}
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		msg := pod.Status.Message
		for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
			if t := cs.State.Terminated; t != nil && (t.ExitCode != 0 || cs.Name == containerName) {
				msg = fmt.Sprintf("container %s exited (code %d, %s) %s", cs.Name, t.ExitCode, t.Reason, t.Message)
				break
			}
		}
		return cerrdefs.ErrFailedPrecondition.WithMessage("the pod ended at its start: " + msg)
	}
	return nil
}

// waitRunning waits for the pod name to run its container, or to fail.
func (k *Kubernetes) waitRunning(ctx context.Context, name string) error {
	return k.watchPod(ctx, name, func(pod *corev1.Pod) (bool, error) {
		if pod == nil || pod.DeletionTimestamp != nil {
			return false, nil
		}
		if err := startFailure(pod); err != nil {
			return false, err
		}
		if pod.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if cs.Name == containerName && cs.State.Running != nil {
				return true, nil
			}
			if cs.Name == containerName && cs.State.Terminated != nil {
				return false, startFailure(&corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed, ContainerStatuses: []corev1.ContainerStatus{cs}}})
			}
		}
		return false, nil
	})
}

// waitPodGoneWithin is waitPodGone bounded by d.
func (k *Kubernetes) waitPodGoneWithin(ctx context.Context, name string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return k.waitPodGone(ctx, name)
}

// waitPodGone waits until the pod name does not exist. A pod that is not
// there is answered by one read, not by a watch's first sync.
func (k *Kubernetes) waitPodGone(ctx context.Context, name string) error {
	if pod, err := k.pod(ctx, name); err != nil || pod == nil {
		return err
	}
	return k.watchPod(ctx, name, func(pod *corev1.Pod) (bool, error) { return pod == nil, nil })
}

// watchPod waits, by a watch, until done says so of the pod name (nil when
// there is none).
func (k *Kubernetes) watchPod(ctx context.Context, name string, done func(*corev1.Pod) (bool, error)) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (kruntime.Object, error) {
			o.FieldSelector = sel
			return k.core.CoreV1().Pods(k.cfg.Namespace).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return k.core.CoreV1().Pods(k.cfg.Namespace).Watch(ctx, o)
		},
	}
	pre := func(store cache.Store) (bool, error) {
		items := store.List()
		if len(items) == 0 {
			return done(nil)
		}
		return done(items[0].(*corev1.Pod))
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, pre, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Deleted:
			return done(nil)
		case watch.Added, watch.Modified:
			if pod, ok := ev.Object.(*corev1.Pod); ok {
				return done(pod)
			}
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("waiting for pod %s: %w", name, context.Cause(ctx))
	}
	return err
}

// Stop suspends the container's Sandbox and waits for its pod to end, which
// gets timeout between SIGTERM and SIGKILL.
func (k *Kubernetes) Stop(ctx context.Context, id string, timeout time.Duration) error {
	sb, err := k.byName(ctx, id)
	if err != nil {
		return err
	}
	if err := k.suspend(ctx, sb.Name, timeout); err != nil {
		return err
	}
	// Bounded: a pod on a node that is gone stays terminating.
	return k.waitPodGoneWithin(ctx, sb.Name, timeout+podGoneGrace)
}

// podGoneGrace is how long past its grace a pod may take to be gone.
const podGoneGrace = time.Minute

// suspend asks Sandbox name not to run, and ends its pod with timeout's grace.
func (k *Kubernetes) suspend(ctx context.Context, name string, timeout time.Duration) error {
	patch := fmt.Sprintf(`{"spec":{"operatingMode":%q}}`, sandboxv1.SandboxOperatingModeSuspended)
	if _, err := k.sandboxes().Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return classify(err)
	}
	pod, err := k.pod(ctx, name)
	if err != nil || pod == nil {
		return err
	}
	return k.deletePod(ctx, pod, timeout)
}

// deletePod deletes pod (that very one) with grace between SIGTERM and
// SIGKILL.
func (k *Kubernetes) deletePod(ctx context.Context, pod *corev1.Pod, grace time.Duration) error {
	// A grace of 0 is a force delete: the object goes at once while the
	// kubelet may still run the containers. One second is the least.
	secs := max(int64(grace.Seconds()), 1)
	err := k.core.CoreV1().Pods(k.cfg.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &secs, Preconditions: &metav1.Preconditions{UID: &pod.UID},
	})
	if isNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or another pod of the name by now
	}
	return classify(err)
}

// Remove deletes a container, running or not, and everything it owns.
func (k *Kubernetes) Remove(ctx context.Context, id string) error {
	sb, err := k.byName(ctx, id)
	if err != nil {
		return err
	}
	prop := metav1.DeletePropagationBackground
	err = k.sandboxes().Delete(ctx, sb.Name, metav1.DeleteOptions{
		PropagationPolicy: &prop, Preconditions: &metav1.Preconditions{UID: &sb.UID},
	})
	if err != nil && !isNotFound(err) {
		return classify(err)
	}
	k.fresh.Delete(sb.Name)
	k.written.Range(func(name, _ any) bool {
		if strings.HasPrefix(name.(string), sb.Name+"-") {
			k.written.Delete(name)
		}
		return true
	})
	// The collector would end the pod in its time; a remove kills it now.
	if pod, err := k.pod(ctx, sb.Name); err == nil && pod != nil {
		_ = k.deletePod(ctx, pod, 0)
	}
	return nil
}

// Rename gives a container another name.
func (k *Kubernetes) Rename(ctx context.Context, id, name string) error {
	k.names.Lock()
	defer k.names.Unlock()
	sb, err := k.byName(ctx, id)
	if err != nil {
		return err
	}
	if other, err := k.byName(ctx, name); err == nil && other.Name != sb.Name {
		return cerrdefs.ErrConflict.WithMessage(fmt.Sprintf("the name %s is in use", name))
	} else if err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q},"labels":{%q:%q}}}`, annName, name, labelName, nameHash(name))
	_, err = k.sandboxes().Patch(ctx, sb.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	return classify(err)
}

// Pause is refused: see errNoPause.
func (k *Kubernetes) Pause(ctx context.Context, id string) error {
	if _, err := k.byName(ctx, id); err != nil {
		return err
	}
	return errNoPause
}

// Unpause is refused: see errNoPause.
func (k *Kubernetes) Unpause(ctx context.Context, id string) error {
	if _, err := k.byName(ctx, id); err != nil {
		return err
	}
	return errNoPause
}
