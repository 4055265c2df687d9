// Package runtime holds the neutral container types that bothy's packages speak,
// and the labels it puts on everything it creates. It makes no decisions; the one
// adapter over the Docker Engine API lives in runtime/docker.
package runtime

import "time"

// Labels bothy sets on the containers, networks and images it creates.
const (
	LabelID       = "bothy.id"       // the sandbox (or runner) ID
	LabelOwner    = "bothy.owner"    // the API key ID that owns it
	LabelKind     = "bothy.kind"     // "sandbox", "network", "image"
	LabelInstance = "bothy.instance" // the bothy data directory that made it
	LabelRecipe   = "bothy.recipe"   // hash of the recipe an image was built from
)

// Kinds, the values of LabelKind.
const (
	KindSandbox = "sandbox"
	KindNetwork = "network"
	KindImage   = "image"
	KindRunner  = "runner" // a pool container for dynamic code and apps
	// KindSnapshot marks an image that holds one key's files (a snapshot, or
	// a sandbox's state captured for a diff); LabelOwner names the key.
	KindSnapshot = "snapshot"
)

// Mount is a bind mount from the host into a container.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// Spec describes a container to create.
type Spec struct {
	// DiskBytes bounds what the container may write to its own filesystem,
	// bytes and metadata together; 0 is no bound. Only engines whose
	// storage enforces a size take one.
	DiskBytes  int64
	Name       string
	Image      string
	Entrypoint []string
	Env        []string
	User       string
	WorkingDir string
	Hostname   string
	Labels     map[string]string
	Mounts     []Mount

	NanoCPUs    int64
	MemoryBytes int64
	PidsLimit   int64

	// Network is the network to join; "none" for no network.
	Network string
	// CapAdd is added after every capability is dropped.
	CapAdd       []string
	ReadOnlyRoot bool
	// Tmpfs mounts a tmpfs at each key, with the value's mount options.
	Tmpfs map[string]string
	// NoFile is the open files limit (soft and hard); 0 keeps the engine's.
	NoFile int64
	// StopTimeout is how long a stop waits before SIGKILL.
	StopTimeout time.Duration
}

// State is what the engine says of a container.
type State string

// Container states, as the engine reports them.
const (
	StateCreated    State = "created"
	StateRunning    State = "running"
	StatePaused     State = "paused"
	StateRestarting State = "restarting"
	StateExited     State = "exited"
	StateDead       State = "dead"
	StateRemoving   State = "removing"
)

// Container is what the engine says of one container.
type Container struct {
	ID      string
	Name    string
	Image   string
	Labels  map[string]string
	State   State
	Created time.Time
	// OOMKilled is set when the engine saw the container's init killed by OOM.
	OOMKilled bool
	ExitCode  int
	// Addr is the container's IP address on its network while it runs
	// (empty when it has none, or the engine does not say).
	Addr string
	// ControlAddr is where bothy reaches the container while it runs, when
	// that is not Addr: a pod without a network still has its pod's
	// address, closed to all but bothy.
	ControlAddr string
}

// NetworkSpec describes the bridge network sandboxes join.
type NetworkSpec struct {
	Name   string
	Bridge string // the host interface name
	Labels map[string]string
	// Isolated turns off traffic between containers on the network, and from them
	// to the host and to Blocked.
	Isolated bool
	// Blocked are the destination ranges (CIDR) the network's containers may
	// not reach, unless a range of Allowed holds the address.
	Blocked, Allowed []string
}

// Image is what the engine says of one image.
type Image struct {
	ID      string
	Tags    []string
	Labels  map[string]string
	Size    int64
	Created time.Time
	// Layers are the digests of the image's uncompressed layers, base first
	// (known from an inspect, not from a list).
	Layers []string
	// Config is what the image sets for its containers (from an inspect).
	Config ImageConfig
}

// ImageConfig is the part of an image's configuration that bothy keeps
// when it writes an image config of its own.
type ImageConfig struct {
	Env        []string
	Cmd        []string
	WorkingDir string
	User       string
}

// EngineInfo is what bothy reports of the engine it drives.
type EngineInfo struct {
	Version     string
	APIVersion  string
	UsernsRemap bool
	CgroupV2    bool
	// RootUID is the host uid that root in a container is (0 without
	// user-namespace remapping); uid N in a container is RootUID+N.
	RootUID int
	// StorageDriver is the engine's storage driver (overlay2, btrfs...).
	StorageDriver string
	// DiskLimits names how the engine enforces Spec.DiskBytes ("btrfs
	// quota", "zfs quota", "xfs project quota"); empty when it cannot.
	DiskLimits string
}
