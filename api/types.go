package api

import "time"

// CreateSandboxRequest is the body of POST /v1/sandboxes. Zero fields take the
// server's defaults.
type CreateSandboxRequest struct {
	Image string `json:"image,omitempty"`
	// Snapshot restores a snapshot into the new sandbox (instead of Image).
	Snapshot string            `json:"snapshot,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	CPUs     float64           `json:"cpus,omitempty"`
	MemoryMB int64             `json:"memory_mb,omitempty"`
	Pids     int64             `json:"pids,omitempty"`
	// DiskMB bounds what the sandbox may write to its filesystem, bytes and
	// files together (absent: the server's default).
	DiskMB int64 `json:"disk_mb,omitempty"`
	// Network is "bridge" (the default: outbound only) or "none".
	Network string `json:"network,omitempty"`
	// IdleTimeoutS stops the sandbox after this long without a call; 0 never.
	// Absent means 900.
	IdleTimeoutS *int64 `json:"idle_timeout_s,omitempty"`
	// IdlePolicy says what counts as activity for the idle timeout:
	// "activity" (the default: API calls, those in flight such as terminals,
	// followed logs and proxied connections, and processes using CPU) or
	// "api" (API calls only).
	IdlePolicy string `json:"idle_policy,omitempty"`
	// TTLS deletes the sandbox this long after creation; absent or 0 never.
	TTLS    *int64            `json:"ttl_s,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	User    string            `json:"user,omitempty"`
	Workdir string            `json:"workdir,omitempty"`
	// KEP serves agent-sandbox's standard runtime interface (KEP-539.2)
	// in the sandbox: the process service (gRPC) on 127.0.0.1:9090 and
	// files, health and metadata (REST) on 127.0.0.1:8080, confined to
	// /workspace; reach them from outside through the port proxy.
	KEP bool `json:"kep,omitempty"`
}

// UpdateSandboxRequest is the body of PATCH /v1/sandboxes/{id}; absent fields
// are kept.
type UpdateSandboxRequest struct {
	Labels       *map[string]string `json:"labels,omitempty"`
	IdleTimeoutS *int64             `json:"idle_timeout_s,omitempty"`
	IdlePolicy   *string            `json:"idle_policy,omitempty"`
	TTLS         *int64             `json:"ttl_s,omitempty"`
}

// Sandbox states.
const (
	StateCreating = "creating"
	StateRunning  = "running"
	StateStopping = "stopping"
	StateStopped  = "stopped"
	StatePaused   = "paused"
	StateStarting = "starting"
	StateFailed   = "failed"
	StateDeleting = "deleting"
)

// Sandbox is a sandbox as the API shows it.
type Sandbox struct {
	ID       string  `json:"id"`
	State    string  `json:"state"`
	Image    string  `json:"image"`
	CPUs     float64 `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	Pids     int64   `json:"pids"`
	DiskMB   int64   `json:"disk_mb,omitempty"`
	// DiskFull says the sandbox has used its disk_mb up (shown when one
	// sandbox is inspected, not in lists).
	DiskFull     bool   `json:"disk_full,omitempty"`
	Network      string `json:"network"`
	IdleTimeoutS int64  `json:"idle_timeout_s"`
	IdlePolicy   string `json:"idle_policy"`
	TTLS         int64  `json:"ttl_s"`
	User         string `json:"user,omitempty"`
	Workdir      string `json:"workdir,omitempty"`
	// KEP says the sandbox serves the standard runtime interface.
	KEP          bool              `json:"kep,omitempty"`
	EnvKeys      []string          `json:"env_keys,omitempty"`
	Labels       map[string]string `json:"labels"`
	Error        string            `json:"error,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	LastActiveAt time.Time         `json:"last_active_at"`
	// AwakeBy says what the last activity was ("API calls", "processes
	// using CPU"); empty until bothy saw some since it started.
	AwakeBy   string     `json:"awake_by,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// SandboxList is a page of GET /v1/sandboxes.
type SandboxList struct {
	Sandboxes  []Sandbox `json:"sandboxes"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// ExecRequest is the body of POST /v1/sandboxes/{id}/exec. Give Cmd (an argument
// vector, run without a shell) or Shell (a line for /bin/sh -c).
type ExecRequest struct {
	Cmd   []string          `json:"cmd,omitempty"`
	Shell string            `json:"shell,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	Cwd   string            `json:"cwd,omitempty"`
	User  string            `json:"user,omitempty"`
	Stdin string            `json:"stdin,omitempty"`
	// TimeoutMs kills the command after this long; 0 means 10 minutes.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// MaxOutputBytes caps each of stdout and stderr in a buffered answer
	// (default 1 MiB, at most 64 MiB); the rest is dropped and Truncated set.
	MaxOutputBytes int64 `json:"max_output_bytes,omitempty"`
}

// ExecResult is the answer of a buffered exec, and the last event of a streamed
// one (without Stdout and Stderr there). A non-zero ExitCode is a result, not an
// error.
type ExecResult struct {
	ExitCode     int     `json:"exit_code"`
	Signal       string  `json:"signal,omitempty"`
	Stdout       string  `json:"stdout"`
	Stderr       string  `json:"stderr"`
	DurationMs   float64 `json:"duration_ms"`
	CPUMs        float64 `json:"cpu_ms"`
	PeakMemoryKB int64   `json:"peak_memory_kb"`
	OOMKilled    bool    `json:"oom_killed"`
	TimedOut     bool    `json:"timed_out"`
	Truncated    bool    `json:"truncated"`
	// StartError says why the command could not start (exit code 126 or 127).
	StartError string `json:"start_error,omitempty"`
	// StdoutEncoding and StderrEncoding are "base64" where the output is
	// not UTF-8 text, or JSON would inflate it past base64 (NUL bytes and
	// other control characters); empty for text. The Go client decodes.
	StdoutEncoding string `json:"stdout_encoding,omitempty"`
	StderrEncoding string `json:"stderr_encoding,omitempty"`
}

// Exec event types of a streamed exec (Accept: application/x-ndjson).
const (
	EventStdout = "stdout"
	EventStderr = "stderr"
	EventExit   = "exit"
	EventError  = "error"
)

// ExecEvent is one line of a streamed exec.
type ExecEvent struct {
	Type string `json:"type"`
	Data string `json:"data,omitempty"`
	// Encoding is "base64" where Data is base64 of binary output.
	Encoding string      `json:"encoding,omitempty"`
	Result   *ExecResult `json:"result,omitempty"`
	Error    *Error      `json:"error,omitempty"`
}

// Image is an image sandboxes can run on.
type Image struct {
	Name      string    `json:"name"`
	Tags      []string  `json:"tags"`
	ID        string    `json:"id"`
	SizeBytes int64     `json:"size_bytes"`
	CreatedAt time.Time `json:"created_at"`
	// Builtin is set for images bothy builds itself from a recipe.
	Builtin bool   `json:"builtin"`
	Recipe  string `json:"recipe,omitempty"`
}

// ImageList is the answer of GET /v1/images. Buildable names images bothy can
// build (POST /v1/images) even when they do not exist yet.
type ImageList struct {
	Images    []Image  `json:"images"`
	Buildable []string `json:"buildable"`
}

// BuildImageRequest is the body of POST /v1/images: build a built-in image when
// it is missing or its recipe changed, or always with Force.
type BuildImageRequest struct {
	Name  string `json:"name"`
	Force bool   `json:"force,omitempty"`
}

// BuildEvent is one line of an image build's NDJSON progress stream.
type BuildEvent struct {
	Type  string `json:"type"` // "progress", "done" or "error"
	Line  string `json:"line,omitempty"`
	Image *Image `json:"image,omitempty"`
	Error *Error `json:"error,omitempty"`
}

// Key is an API key as listed.
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Admin     bool       `json:"admin"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// Quota is what the key is held to: QuotaSet, over the server's
	// defaults (which admin keys do not have).
	Quota    Quota `json:"quota"`
	QuotaSet Quota `json:"quota_set"`
}

// Quota bounds what one key may hold at once; a zero (absent) field is no
// bound, or, when set on a key, the server's default.
type Quota struct {
	Sandboxes     int64   `json:"sandboxes,omitempty"`
	Running       int64   `json:"running,omitempty"`
	MemoryMB      int64   `json:"memory_mb,omitempty"`
	CPUs          float64 `json:"cpus,omitempty"`
	DiskMB        int64   `json:"disk_mb,omitempty"`
	Snapshots     int64   `json:"snapshots,omitempty"`
	SnapshotBytes int64   `json:"snapshot_bytes,omitempty"`
}

// CreateKeyRequest is the body of POST /v1/keys.
type CreateKeyRequest struct {
	Name  string `json:"name"`
	Admin bool   `json:"admin,omitempty"`
	Quota *Quota `json:"quota,omitempty"`
}

// UpdateKeyRequest is the body of PATCH /v1/keys/{id}.
type UpdateKeyRequest struct {
	Quota *Quota `json:"quota,omitempty"`
}

// CreatedKey is a new key with its secret, shown this once.
type CreatedKey struct {
	Key
	Secret string `json:"secret"`
}

// KeyList is the answer of GET /v1/keys.
type KeyList struct {
	Keys []Key `json:"keys"`
}

// Readiness is the answer of GET /readyz.
type Readiness struct {
	Ready  bool              `json:"ready"`
	Engine EngineStatus      `json:"engine"`
	Images map[string]string `json:"images"`
	// PoolsWarm says every runner pool has its minimum of idle runners (it
	// does not gate Ready: sandboxes do not need runners).
	PoolsWarm bool `json:"pools_warm"`
	// SandboxPoolsWarm says every warm sandbox pool holds its size (it does
	// not gate Ready either: a create without one is cold, not refused).
	SandboxPoolsWarm bool `json:"sandbox_pools_warm"`
	// DiskLimits names how sandboxes' disk_mb is enforced; "none" when the
	// engine cannot, and disk_mb is then refused.
	DiskLimits string `json:"disk_limits"`
	Error      string `json:"error,omitempty"`
}

// EngineStatus describes the container engine.
type EngineStatus struct {
	Version     string `json:"version"`
	APIVersion  string `json:"api_version"`
	UsernsRemap bool   `json:"userns_remap"`
	CgroupV2    bool   `json:"cgroup_v2"`
}

// PtySession is a terminal session in a sandbox.
type PtySession struct {
	ID        string    `json:"id"`
	Argv      []string  `json:"argv"`
	PID       int       `json:"pid"`
	Cols      uint16    `json:"cols"`
	Rows      uint16    `json:"rows"`
	CreatedAt time.Time `json:"created_at"`
	Viewers   int       `json:"viewers"`
	Exited    bool      `json:"exited"`
	ExitCode  int       `json:"exit_code"`
}

// PtySessionList is the answer of GET /v1/sandboxes/{id}/pty/sessions.
type PtySessionList struct {
	Sessions []PtySession `json:"sessions"`
}

// Ticket is a short-lived, single-use credential that lets a browser open a
// WebSocket (which cannot carry an Authorization header) on one sandbox.
type Ticket struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PtyMessage is a JSON control message on a terminal WebSocket (text frames):
// "session" and "exit" from the server, "resize" and "signal" from the client.
type PtyMessage struct {
	Type     string   `json:"type"`
	ID       string   `json:"id,omitempty"`
	PID      int      `json:"pid,omitempty"`
	Argv     []string `json:"argv,omitempty"`
	Cols     uint16   `json:"cols,omitempty"`
	Rows     uint16   `json:"rows,omitempty"`
	Signal   string   `json:"signal,omitempty"`
	ExitCode *int     `json:"exit_code,omitempty"`
	Message  string   `json:"message,omitempty"`
}

// FileInfo describes a file in a sandbox.
type FileInfo struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Type is file, dir, symlink or other.
	Type   string    `json:"type"`
	Size   int64     `json:"size"`
	Mode   string    `json:"mode"` // octal permission bits, "0644"
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"` // of a symlink
	// Owner and Group are the file's user and group, named as the
	// sandbox's /etc/passwd and /etc/group name them (else their numbers).
	Owner string `json:"owner,omitempty"`
	Group string `json:"group,omitempty"`
}

// DirList is the answer of GET /v1/sandboxes/{id}/files on a directory.
type DirList struct {
	Dir       FileInfo   `json:"dir"`
	Entries   []FileInfo `json:"entries"`
	Truncated bool       `json:"truncated,omitempty"`
}

// MkdirRequest is the body of POST /v1/sandboxes/{id}/files/mkdir.
type MkdirRequest struct {
	Path string `json:"path"`
	Mode string `json:"mode,omitempty"` // octal, default "0755"
	// Parents creates missing parents (and accepts an existing directory);
	// default true.
	Parents *bool `json:"parents,omitempty"`
}

// MoveRequest is the body of POST /v1/sandboxes/{id}/files/move.
type MoveRequest struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Overwrite bool   `json:"overwrite,omitempty"`
}

// ChmodRequest is the body of POST /v1/sandboxes/{id}/files/chmod.
type ChmodRequest struct {
	Path string `json:"path"`
	Mode string `json:"mode"` // octal
}

// ArchiveResult is the answer of PUT /v1/sandboxes/{id}/archive.
type ArchiveResult struct {
	Path  string `json:"path"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

// FileEvent is one event of GET /v1/sandboxes/{id}/files/watch.
type FileEvent struct {
	Seq  uint64 `json:"seq"`
	Type string `json:"type"` // create, write, remove, rename, gap, ready
	Path string `json:"path,omitempty"`
	// From is the old path of a rename.
	From  string    `json:"from,omitempty"`
	IsDir bool      `json:"is_dir,omitempty"`
	Time  time.Time `json:"time"`
}

// CreateSnapshotRequest is the body of POST /v1/sandboxes/{id}/snapshots.
type CreateSnapshotRequest struct {
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Snapshot is a checkpoint of a sandbox's filesystem.
type Snapshot struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	SandboxID string            `json:"sandbox_id"`
	Parent    string            `json:"parent,omitempty"`
	BaseImage string            `json:"base_image"`
	Labels    map[string]string `json:"labels"`
	SizeBytes int64             `json:"size_bytes"`
	CreatedAt time.Time         `json:"created_at"`
}

// SnapshotList is the answer of GET /v1/snapshots.
type SnapshotList struct {
	Snapshots []Snapshot `json:"snapshots"`
}

// RestoreRequest is the body of POST /v1/sandboxes/{id}/restore.
type RestoreRequest struct {
	Snapshot string `json:"snapshot"`
	// Paths restores only these absolute paths (each exactly as in the
	// snapshot: made, replaced or removed), leaving the rest of the sandbox.
	Paths []string `json:"paths,omitempty"`
}

// DiffEntry is one path that differs between two states.
type DiffEntry struct {
	Path   string `json:"path"`
	Change string `json:"change"` // added, modified, deleted
	Type   string `json:"type"`   // file, dir, symlink, other
	Size   int64  `json:"size"`
}

// Diff is the answer of GET /v1/snapshots/{id}/diff?to=.
type Diff struct {
	From    string      `json:"from"`
	To      string      `json:"to"`
	Changes []DiffEntry `json:"changes"`
}

// ForkRequest is the body of POST /v1/sandboxes/{id}/fork.
type ForkRequest struct {
	// Count is how many sandboxes to make, 1 to 16.
	Count int `json:"count"`
	// Labels are the new sandboxes' labels (the source's are not copied).
	Labels map[string]string `json:"labels,omitempty"`
}

// ForkResult is the answer of a fork: the snapshot the new sandboxes start
// from (it stays, and can make more), and the sandboxes, running.
type ForkResult struct {
	Snapshot  string    `json:"snapshot"`
	Sandboxes []Sandbox `json:"sandboxes"`
}

// Route is one route of bothy's route table and the bounds of its class,
// in GET /v1/routes: every front door (REST, WebSockets, MCP, E2B's planes)
// is served from this one table.
type Route struct {
	// Method is the route's method, "*" for any.
	Method string `json:"method"`
	// Path is the route as the router has it (":id" a parameter, "*" the
	// rest of a path); with Header set, a path prefix ("" for any).
	Path string `json:"path"`
	// Header, when set, routes every request that carries it here, before
	// the router sees the path.
	Header string `json:"header,omitempty"`
	// Host, when set, routes every request to a host of this form here,
	// whatever its path (preview hosts: {port}-{id}.DOMAIN).
	Host string `json:"host,omitempty"`
	// Class names the route's bounds: none, json, stream, app, stdin,
	// socket, proxy, rpc.
	Class string `json:"class"`
	// BodyLimit is the most bytes of request body the route reads (413
	// past it); WholeBody says the body is read whole (and reserved from
	// the body budget first); Streams that the answer may stream.
	BodyLimit int64 `json:"body_limit"`
	WholeBody bool  `json:"whole_body"`
	Streams   bool  `json:"streams"`
	// Auth is what the route needs: "none" (public, or authenticated by
	// the route itself: tickets, E2B's tokens), "key" or "admin".
	Auth string `json:"auth"`
}

// RouteList is the answer of GET /v1/routes.
type RouteList struct {
	Routes []Route `json:"routes"`
}
