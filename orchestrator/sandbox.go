package orchestrator

import (
	"fmt"
	"path"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	cerrdefs "github.com/containerd/errdefs"
)

// Sandbox is one sandbox as the orchestrator knows it.
type Sandbox struct {
	ID          string
	Owner       string
	State       State
	Image       string
	ContainerID string
	Spec        Spec
	Labels      map[string]string
	// Error says why the sandbox failed, when it did.
	Error     string
	CreatedAt time.Time
	UpdatedAt time.Time
	// LastActiveAt is when it was last active; AwakeBy says what kept it
	// awake then (empty until bothy saw activity since it started).
	LastActiveAt time.Time
	AwakeBy      string
	// Woken says a data-plane call (Attach) started or resumed the sandbox
	// to be served; set only in what Attach hands its function.
	Woken bool

	seq   int64
	token string
}

// ExpiresAt is when the TTL deletes the sandbox; zero when it has no TTL.
func (s Sandbox) ExpiresAt() time.Time {
	if s.Spec.TTLSeconds <= 0 {
		return time.Time{}
	}
	return s.CreatedAt.Add(time.Duration(s.Spec.TTLSeconds) * time.Second)
}

// Spec is what a sandbox was asked to be.
type Spec struct {
	Env         map[string]string `json:"env,omitempty"`
	CPUs        float64           `json:"cpus"`
	MemoryMB    int64             `json:"memory_mb"`
	Pids        int64             `json:"pids"`
	DiskMB      int64             `json:"disk_mb,omitempty"`
	Network     string            `json:"network"`
	IdleTimeout int64             `json:"idle_timeout_s"`
	// IdlePolicy says what counts as activity for IdleTimeout: IdleActivity
	// (the default, also when empty) or IdleAPI.
	IdlePolicy string `json:"idle_policy,omitempty"`
	TTLSeconds int64  `json:"ttl_s"`
	User       string `json:"user,omitempty"`
	Workdir    string `json:"workdir,omitempty"`
	// KEP: the agent serves the standard runtime interface (CreateOptions.KEP).
	KEP bool `json:"kep,omitempty"`
	// Transport is how bothy reaches the sandbox's agent: TransportUnix
	// (also when empty) or TransportTCP, fixed when the sandbox is made.
	Transport string `json:"transport,omitempty"`
}

// The agent channel's transports (Config.Transport).
const (
	// TransportUnix: the agent dials a unix socket bothy listens on, in a
	// directory bind-mounted into its container.
	TransportUnix = "unix"
	// TransportTCP: the agent listens on TCP in its container and bothy
	// dials it, with mutual TLS from a CA bothy keeps.
	TransportTCP = "tcp"
)

// CommandEnv is the environment a command, process or terminal in the
// sandbox gets besides its image's: the sandbox's own, under what the request
// sets. (A sandbox taken from a warm pool was started before its environment
// was known, so it is given with every command, not only at container start.)
func (sb Sandbox) CommandEnv(req map[string]string) map[string]string {
	if len(sb.Spec.Env) == 0 {
		return req
	}
	out := make(map[string]string, len(sb.Spec.Env)+len(req))
	for k, v := range sb.Spec.Env {
		out[k] = v
	}
	for k, v := range req {
		out[k] = v
	}
	return out
}

// CreateOptions asks for a new sandbox. Zero fields take the defaults; pointer
// fields distinguish "not given" from zero.
type CreateOptions struct {
	Image string
	// Snapshot, instead of Image, makes the sandbox from one of the
	// owner's snapshots.
	Snapshot    string
	Env         map[string]string
	CPUs        float64
	MemoryMB    int64
	Pids        int64
	DiskMB      int64
	Network     string
	IdleTimeout *int64
	IdlePolicy  string
	TTLSeconds  *int64
	User        string
	Workdir     string
	// KEP serves the standard runtime interface of agent-sandbox
	// (KEP-539.2) in the sandbox (wire.KEPConfig).
	KEP            bool
	Labels         map[string]string
	IdempotencyKey string
}

// UpdateOptions changes what can change on a live sandbox. Nil fields are kept.
type UpdateOptions struct {
	Labels      *map[string]string
	IdleTimeout *int64
	IdlePolicy  *string
	TTLSeconds  *int64
}

// Limits bound what a create may ask for.
type Limits struct {
	MaxCPUs     float64
	MaxMemoryMB int64
	MaxPids     int64
	// MaxDiskMB bounds disk_mb; DefaultDiskMB is a sandbox's that asks for
	// none. Both apply only where the engine enforces a disk size.
	MaxDiskMB     int64
	DefaultDiskMB int64
}

// Defaults of a sandbox that asks for nothing.
const (
	DefaultCPUs        = 1.0
	DefaultMemoryMB    = 1024
	DefaultPids        = 1024
	DefaultIdleTimeout = 15 * 60
	// IdleActivity counts as activity the API calls, those in flight
	// (terminals, followed logs, proxied connections, watches), and the
	// sandbox's processes using CPU.
	IdleActivity = "activity"
	// IdleAPI counts only the API calls (those in flight included).
	IdleAPI     = "api"
	maxTimeout  = 30 * 24 * 3600
	maxEnv      = 256
	maxEnvBytes = 64 << 10
	maxLabels   = 64
)

// DefaultLimits fit the host: every core, all of its memory, 32768 processes.
func DefaultLimits() Limits {
	mem := int64(64 << 10)
	var si syscall.Sysinfo_t
	if syscall.Sysinfo(&si) == nil {
		mem = int64(si.Totalram) * int64(si.Unit) >> 20
	}
	return Limits{MaxCPUs: float64(runtime.NumCPU()), MaxMemoryMB: mem, MaxPids: 32768,
		MaxDiskMB: 100 << 10, DefaultDiskMB: 10 << 10}
}

// minDiskMB is the smallest disk a sandbox may ask for.
const minDiskMB = 16

var (
	envName   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKey  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$`)
	userSpec  = regexp.MustCompile(`^([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})(:([a-z_][a-z0-9_-]{0,31}|[0-9]{1,10}))?$`)
	imageSpec = regexp.MustCompile(`^[a-z0-9][a-z0-9._/:@-]{0,254}$`)
)

// invalid collects field problems into one invalid-argument error.
type invalid []string

func (v *invalid) add(field, format string, args ...any) {
	*v = append(*v, field+": "+fmt.Sprintf(format, args...))
}

func (v invalid) err() error {
	if len(v) == 0 {
		return nil
	}
	return cerrdefs.ErrInvalidArgument.WithMessage(strings.Join(v, "; "))
}

// resolve validates opts against lim and fills in defaults. diskLimits names
// how the engine enforces a disk size; empty when it cannot, and disk_mb is
// then refused rather than ignored.
func (opts CreateOptions) resolve(defaultImage string, lim Limits, diskLimits string) (image string, spec Spec, err error) {
	var v invalid
	image = opts.Image
	if image == "" {
		image = defaultImage
	}
	if !imageSpec.MatchString(image) {
		v.add("image", "%q is not an image reference", image)
	}
	spec = Spec{
		Env: opts.Env, CPUs: opts.CPUs, MemoryMB: opts.MemoryMB, Pids: opts.Pids,
		Network: opts.Network, User: opts.User, Workdir: opts.Workdir, KEP: opts.KEP,
		IdleTimeout: DefaultIdleTimeout,
	}
	if spec.CPUs == 0 {
		spec.CPUs = min(DefaultCPUs, lim.MaxCPUs)
	}
	if spec.CPUs < 0.01 || spec.CPUs > lim.MaxCPUs {
		v.add("cpus", "must be between 0.01 and %g, got %g", lim.MaxCPUs, spec.CPUs)
	}
	if spec.MemoryMB == 0 {
		spec.MemoryMB = min(DefaultMemoryMB, lim.MaxMemoryMB)
	}
	if spec.MemoryMB < 32 || spec.MemoryMB > lim.MaxMemoryMB {
		v.add("memory_mb", "must be between 32 and %d, got %d", lim.MaxMemoryMB, spec.MemoryMB)
	}
	if spec.Pids == 0 {
		spec.Pids = min(DefaultPids, lim.MaxPids)
	}
	if spec.Pids < 16 || spec.Pids > lim.MaxPids {
		v.add("pids", "must be between 16 and %d, got %d", lim.MaxPids, spec.Pids)
	}
	switch {
	case diskLimits == "" && opts.DiskMB != 0:
		v.add("disk_mb", "this engine's storage cannot enforce a disk size, and bothy does not pretend to (see docs/security.md)")
	case diskLimits != "":
		spec.DiskMB = opts.DiskMB
		if spec.DiskMB == 0 {
			spec.DiskMB = min(lim.DefaultDiskMB, lim.MaxDiskMB)
		}
		if spec.DiskMB < minDiskMB || spec.DiskMB > lim.MaxDiskMB {
			v.add("disk_mb", "must be between %d and %d, got %d", minDiskMB, lim.MaxDiskMB, spec.DiskMB)
		}
	}
	switch spec.Network {
	case "":
		spec.Network = "bridge"
	case "bridge", "none":
	default:
		v.add("network", `must be "bridge" or "none", got %q`, spec.Network)
	}
	if opts.IdleTimeout != nil {
		spec.IdleTimeout = *opts.IdleTimeout
	}
	if opts.TTLSeconds != nil {
		spec.TTLSeconds = *opts.TTLSeconds
	}
	spec.IdlePolicy = opts.IdlePolicy
	checkIdlePolicy(&v, spec.IdlePolicy)
	checkTimeouts(&v, spec.IdleTimeout, spec.TTLSeconds)
	if spec.KEP && spec.User != "" && spec.User != "root" && spec.User != "0" && spec.User != "0:0" {
		// Its files and processes are root's: through the loopback, a
		// sandbox's user would be root.
		v.add("kep", "the standard runtime interface acts as root; it is served only in sandboxes without a user of their own (got user %q)", spec.User)
	}
	if spec.User != "" && !userSpec.MatchString(spec.User) {
		v.add("user", "%q is not a user name or uid[:gid]", spec.User)
	}
	if spec.Workdir != "" && (!path.IsAbs(spec.Workdir) || len(spec.Workdir) > 1024 || strings.ContainsRune(spec.Workdir, 0)) {
		v.add("workdir", "must be an absolute path, got %q", spec.Workdir)
	}
	checkEnv(&v, "env", spec.Env)
	for k := range spec.Env {
		if strings.HasPrefix(k, "BOTHY_") {
			v.add("env", "%s: the BOTHY_ prefix is reserved", k)
		}
	}
	checkLabels(&v, opts.Labels)
	if len(opts.IdempotencyKey) > 255 {
		v.add("Idempotency-Key", "longer than 255 bytes")
	}
	return image, spec, v.err()
}

func checkTimeouts(v *invalid, idle, ttl int64) {
	if idle < 0 || idle > maxTimeout {
		v.add("idle_timeout_s", "must be between 0 (never) and %d, got %d", maxTimeout, idle)
	}
	if ttl < 0 || ttl > maxTimeout {
		v.add("ttl_s", "must be between 0 (none) and %d, got %d", maxTimeout, ttl)
	}
}

func checkIdlePolicy(v *invalid, p string) {
	if p != "" && p != IdleActivity && p != IdleAPI {
		v.add("idle_policy", "must be %q or %q, got %q", IdleActivity, IdleAPI, p)
	}
}

func checkEnv(v *invalid, field string, env map[string]string) {
	if len(env) > maxEnv {
		v.add(field, "at most %d variables, got %d", maxEnv, len(env))
	}
	size := 0
	for k, val := range env {
		size += len(k) + len(val)
		if !envName.MatchString(k) {
			v.add(field, "%q is not a variable name", k)
		}
		if strings.ContainsRune(val, 0) {
			v.add(field, "%s: value contains a NUL byte", k)
		}
	}
	if size > maxEnvBytes {
		v.add(field, "larger than %d bytes", maxEnvBytes)
	}
}

func checkLabels(v *invalid, labels map[string]string) {
	if len(labels) > maxLabels {
		v.add("labels", "at most %d, got %d", maxLabels, len(labels))
	}
	for k, val := range labels {
		if !labelKey.MatchString(k) {
			v.add("labels", "%q is not a label key (letters, digits, . _ / -, at most 63)", k)
		}
		if len(val) > 256 {
			v.add("labels", "%s: value longer than 256 bytes", k)
		}
	}
}
