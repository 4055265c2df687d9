package kubernetes

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/bothy/bothy/agent/wire"
	"github.com/bothy/bothy/runtime"
)

const (
	// containerName is the sandbox's container in its pod.
	containerName = "sandbox"
	// agentVolume holds the agent binary, copied from the agent image.
	agentVolume = "bothy-agent"
	// maxMountedFile bounds each file a mount carries into a Secret; the
	// Secret's whole is bounded by the API server (1 MiB).
	maxMountedFile = 64 << 10
)

// Annotations bothy sets on its Sandbox objects.
const (
	annName    = "bothy.dev/name"    // the name bothy gave the container
	annMounts  = "bothy.dev/mounts"  // the mounts to refresh at each start (JSON)
	annStarted = "bothy.dev/started" // "true" once the sandbox has been started
	annImage   = "bothy.dev/image"   // the image as bothy named it
	labelName  = "bothy.name-hash"   // a hash of the name, to find it by
)

// fileMount is a bind mount of a host directory or file that bothy turns into
// a Secret's keys: Key prefixes them.
type fileMount struct {
	Source string `json:"source"`
	Target string `json:"target"`
	Key    string `json:"key"`
	Dir    bool   `json:"dir"`
}

var secretKey = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// fileKey is the one key of the Secret of a mounted file.
const fileKey = "f"

// secretData reads the files of m, as the Secret that carries them holds
// them: a directory's regular files by their names, a file as fileKey.
func secretData(m fileMount) (map[string][]byte, error) {
	data := map[string][]byte{}
	add := func(key, file string) error {
		if !secretKey.MatchString(key) {
			return cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("mount: file name %q cannot be carried to a pod", key))
		}
		fi, err := os.Stat(file)
		if err != nil {
			return err
		}
		if fi.Size() > maxMountedFile {
			return cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("mount: %s is larger than %d bytes", file, maxMountedFile))
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		data[key] = b
		return nil
	}
	if !m.Dir {
		return data, add(fileKey, m.Source)
	}
	entries, err := os.ReadDir(m.Source)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		// Sockets and directories stay behind: only a network transport's
		// files are of use in a pod.
		if e.Type().IsRegular() {
			if err := add(e.Name(), path.Join(m.Source, e.Name())); err != nil {
				return nil, err
			}
		}
	}
	return data, nil
}

// podSpec is the pod of a container of spec, and the mounts it carries in
// Secrets named secret-KEY. carrier, when set, is spec's image with the
// agent in it (Config.WithAgent): the agent, as PID 1, installs the
// network rules itself, and the pod has no init container.
func (k *Kubernetes) podSpec(spec runtime.Spec, secret, carrier string) (corev1.PodSpec, []fileMount, error) {
	if k.cfg.AgentImage == "" {
		return corev1.PodSpec{}, nil, cerrdefs.ErrFailedPrecondition.WithMessage("the kubernetes runtime has no agent image")
	}
	bad := func(format string, a ...any) (corev1.PodSpec, []fileMount, error) {
		return corev1.PodSpec{}, nil, cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, a...))
	}
	no := false
	c := corev1.Container{
		Name: containerName, Image: k.imageRef(spec.Image), ImagePullPolicy: corev1.PullIfNotPresent,
		Command: spec.Entrypoint, WorkingDir: spec.WorkingDir,
		SecurityContext: &corev1.SecurityContext{
			Privileged: &no, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &spec.ReadOnlyRoot,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{
			// Requests are small, so that a node holds as many idle
			// sandboxes as its memory does; limits bound each one.
			corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
		}},
	}
	c.SecurityContext.Capabilities.Add = capabilities(spec.CapAdd)
	for _, e := range spec.Env {
		name, value, _ := strings.Cut(e, "=")
		if name == wire.GuardEnv || name == wire.HostIPsEnv || name == wire.ReadOnlyEnv {
			return bad("env: %s is bothy's", name)
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: name, Value: value})
	}
	if spec.User != "" {
		u, g, hasGroup := strings.Cut(spec.User, ":")
		uid, err := strconv.ParseInt(u, 10, 64)
		if err != nil {
			return bad("user %q: the kubernetes runtime takes a numeric uid[:gid]", spec.User)
		}
		c.SecurityContext.RunAsUser = &uid
		if hasGroup {
			gid, err := strconv.ParseInt(g, 10, 64)
			if err != nil {
				return bad("user %q: the kubernetes runtime takes a numeric uid[:gid]", spec.User)
			}
			c.SecurityContext.RunAsGroup = &gid
		}
		if uid == 0 {
			c.SecurityContext.RunAsNonRoot = &no
		}
	}
	if spec.NanoCPUs > 0 {
		c.Resources.Limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(spec.NanoCPUs/1e6, 1), resource.DecimalSI)
	}
	if spec.MemoryBytes > 0 {
		c.Resources.Limits[corev1.ResourceMemory] = *resource.NewQuantity(spec.MemoryBytes, resource.BinarySI)
		if spec.MemoryBytes < 16<<20 {
			c.Resources.Requests[corev1.ResourceMemory] = *resource.NewQuantity(spec.MemoryBytes, resource.BinarySI)
		}
	}
	if spec.DiskBytes > 0 {
		// A request left out would be the limit: a node would hold only as
		// many sandboxes as its disk holds full ones.
		c.Resources.Limits[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(spec.DiskBytes, resource.BinarySI)
		c.Resources.Requests[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(min(spec.DiskBytes, 64<<20), resource.BinarySI)
	}
	grace := max(int64(spec.StopTimeout.Seconds()), 1)
	ps := corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  &no,
		EnableServiceLinks:            &no,
		TerminationGracePeriodSeconds: &grace,
		Hostname:                      spec.Hostname,
		SecurityContext: &corev1.PodSecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
	if k.cfg.UserNS {
		ps.HostUsers = &no
	}
	if k.cfg.RuntimeClassName != "" {
		ps.RuntimeClassName = &k.cfg.RuntimeClassName
	}
	initArgs, err := k.guardArgs(spec.Network)
	if err != nil {
		return corev1.PodSpec{}, nil, err
	}
	var initMounts []corev1.VolumeMount
	var files []fileMount
	agent := false
	for i, m := range spec.Mounts {
		switch {
		case m.Target == wire.BinaryPath && carrier != "":
			// The image carries it.
			agent = true
		case m.Target == wire.BinaryPath:
			agent = true
			vol, args, in, out := agentCopy()
			ps.Volumes = append(ps.Volumes, vol)
			initArgs = append(initArgs, args...)
			initMounts = append(initMounts, in)
			c.VolumeMounts = append(c.VolumeMounts, out)
		case m.Target == "/etc/resolv.conf":
			// The cluster's resolver is the kubelet's to write (the pod's
			// DNS policy); the engine's resolver bothy names does not exist.
		default:
			fi, err := os.Stat(m.Source)
			if err != nil {
				return bad("mount %s: %v", m.Target, err)
			}
			if !m.ReadOnly {
				return bad("mount %s: the kubernetes runtime carries only read-only mounts", m.Target)
			}
			fm := fileMount{Source: m.Source, Target: m.Target, Key: "m" + strconv.Itoa(i), Dir: fi.IsDir()}
			files = append(files, fm)
			// A directory carries the agent's token and keys: root's alone.
			// A file (/etc/hosts) is everyone's to read.
			mode := int32(0o444)
			if fm.Dir {
				mode = 0o400
			}
			vol := corev1.Volume{Name: "bothy-" + fm.Key, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: secret + "-" + fm.Key, DefaultMode: &mode,
			}}}
			mount := corev1.VolumeMount{Name: vol.Name, MountPath: m.Target, ReadOnly: true}
			if !fm.Dir {
				mount.SubPath = fileKey
			}
			ps.Volumes = append(ps.Volumes, vol)
			c.VolumeMounts = append(c.VolumeMounts, mount)
		}
	}
	i := 0
	for target, opts := range spec.Tmpfs {
		ed := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
		for o := range strings.SplitSeq(opts, ",") {
			if v, ok := strings.CutPrefix(o, "size="); ok {
				q, err := resource.ParseQuantity(strings.TrimSuffix(strings.ToUpper(v), "B") + "i")
				if err != nil {
					return bad("tmpfs %s: size %q", target, v)
				}
				ed.SizeLimit = &q
			}
		}
		name := "bothy-tmpfs-" + strconv.Itoa(i)
		i++
		ps.Volumes = append(ps.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: ed}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: name, MountPath: target})
	}
	if carrier != "" {
		// The agent installs the rules as PID 1 before any other process
		// starts, then drops from every set of every thread of its own
		// the two capabilities it needed (agent/guard): nothing in the
		// container has them after. The kubelet expands $(...) in env.
		c.Image = carrier
		c.Env = append(c.Env,
			corev1.EnvVar{Name: wire.HostIPsEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIPs"}}},
			corev1.EnvVar{Name: wire.GuardEnv, Value: strings.Join(initArgs, " ")})
		c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, "NET_ADMIN")
	} else {
		// One init container, from the agent image, before any of the
		// sandbox's processes: it installs the network rules, which it
		// alone may (CAP_NET_ADMIN), and copies the agent in.
		ps.InitContainers = []corev1.Container{k.initContainer(initArgs, initMounts)}
	}
	// The files the node binds in writable, outside the sandbox's disk
	// limit, the agent as PID 1 makes read-only before any other process
	// starts (CAP_SYS_ADMIN); then it drops that capability and the rest
	// of its own (CAP_SETPCAP), and seals what the runtime's seccomp
	// profile allowed for CAP_SYS_ADMIN (agent/guard).
	c.TerminationMessagePath = wire.TerminationLog
	// A container that ends at its start says why in its log: the pod's
	// status carries the end of it, and so does the start's error.
	c.TerminationMessagePolicy = corev1.TerminationMessageFallbackToLogsOnError
	if agent && !agentIsPID1(spec) {
		// Nothing would drop what the agent is given.
		return bad("the agent, mounted, must be the container's entrypoint, as root")
	}
	if agent {
		c.Env = append(c.Env, corev1.EnvVar{Name: wire.ReadOnlyEnv, Value: strings.Join(wire.PodFiles, " ")})
		c.SecurityContext.Capabilities.Add = append(c.SecurityContext.Capabilities.Add, "SYS_ADMIN", "SETPCAP")
	}
	ps.Containers = []corev1.Container{c}
	return ps, files, nil
}

// carries says whether the pod of spec may take an image with the agent in
// it: the agent is spec's entrypoint, mounted where the image would carry
// it, and runs as root, which installing the rules takes.
func carries(spec runtime.Spec) bool {
	if !agentIsPID1(spec) {
		return false
	}
	for _, m := range spec.Mounts {
		if m.Target == wire.BinaryPath {
			return true
		}
	}
	return false
}

// agentIsPID1 says whether spec's entrypoint is the agent, as root: only
// then is the pod given the capabilities the agent drops.
func agentIsPID1(spec runtime.Spec) bool {
	u, _, _ := strings.Cut(spec.User, ":")
	return len(spec.Entrypoint) > 0 && spec.Entrypoint[0] == wire.BinaryPath && u == "0"
}

// installDir is where an init container sees the volume it copies the
// agent into (not where the agent image keeps it, which it runs).
const installDir = "/.bothy-install"

// agentCopy takes the agent from the agent image into a pod whose image does
// not carry it: an emptyDir, which the init container fills (its arguments
// and mount) and the sandbox's container mounts where it runs the agent
// from.
func agentCopy() (vol corev1.Volume, args []string, in, out corev1.VolumeMount) {
	vol = corev1.Volume{Name: agentVolume, VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: new(resource.MustParse("128Mi"))}}}
	args = []string{"--install", path.Join(installDir, path.Base(wire.BinaryPath))}
	in = corev1.VolumeMount{Name: agentVolume, MountPath: installDir}
	out = corev1.VolumeMount{Name: agentVolume, MountPath: path.Dir(wire.BinaryPath), ReadOnly: true}
	return vol, args, in, out
}

func capabilities(names []string) []corev1.Capability {
	out := make([]corev1.Capability, len(names))
	for i, n := range names {
		out[i] = corev1.Capability(n)
	}
	return out
}

// initContainer is the one init container of a pod, from the agent image,
// which runs before any of the sandbox's processes: it installs the
// network rules, which it alone may (CAP_NET_ADMIN), and copies the agent
// in ("bothy-agent init-pod" with args).
func (k *Kubernetes) initContainer(args []string, mounts []corev1.VolumeMount) corev1.Container {
	no, yes := false, true
	return corev1.Container{
		Name: "bothy-init", Image: k.cfg.AgentImage, ImagePullPolicy: corev1.PullIfNotPresent,
		Command:      append([]string{wire.BinaryPath, "init-pod"}, args...),
		Env:          []corev1.EnvVar{{Name: wire.HostIPsEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIPs"}}}},
		VolumeMounts: mounts,
		SecurityContext: &corev1.SecurityContext{
			Privileged: &no, AllowPrivilegeEscalation: &no, RunAsUser: new(int64(0)), RunAsNonRoot: &no, ReadOnlyRootFilesystem: &yes,
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN"}},
		},
		// Its requests count for the pod while it runs: as small as the
		// sandbox's own.
		Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
		},
	}
}

// imageRef is where the cluster pulls image ref.
func (k *Kubernetes) imageRef(ref string) string {
	if k.cfg.ImageRef != nil {
		if r := k.cfg.ImageRef(ref); r != "" {
			return r
		}
	}
	return ref
}

func encodeMounts(ms []fileMount) string {
	b, _ := json.Marshal(ms)
	return string(b)
}

func decodeMounts(s string) ([]fileMount, error) {
	var ms []fileMount
	if s == "" {
		return nil, nil
	}
	return ms, json.Unmarshal([]byte(s), &ms)
}
