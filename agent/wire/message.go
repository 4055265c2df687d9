package wire

import (
	"encoding/json"
	"time"
)

// ProtocolVersion is bumped on any incompatible change to the messages below
// or to the streams that carry them (2: flow records on every stream, flow.go).
const ProtocolVersion = 2

// Hello is the first frame an agent sends on a new connection.
type Hello struct {
	Version int    `json:"version"`
	Token   string `json:"token"`
	PID     int    `json:"pid"`
}

// Welcome is bothy's answer to Hello. A non-empty Error means the connection is
// refused and will be closed.
type Welcome struct {
	Error string `json:"error,omitempty"`
}

// Request is the first frame on every stream bothy opens.
type Request struct {
	Op   string       `json:"op"` // "exec", "user", "ping", "pty_attach", "pty_list", "pty_kill"
	Exec *ExecRequest `json:"exec,omitempty"`
	// User is the user to look up, for op "user".
	User string `json:"user,omitempty"`
	// Pty is the stream to open, for op "pty_attach".
	Pty *PtyAttach `json:"pty,omitempty"`
	// Session names the session, for op "pty_kill".
	Session string `json:"session,omitempty"`
	// Fs is the file operation, for op "fs".
	Fs *FsRequest `json:"fs,omitempty"`
	// Watch is the watch to open, for op "watch".
	Watch *WatchRequest `json:"watch,omitempty"`
	// Run is the code to run, for op "run".
	Run *RunRequest `json:"run,omitempty"`
	// AppInit is the app to load, for op "app_init".
	AppInit *AppInit `json:"app_init,omitempty"`
	// Invoke is the request to hand to the app, for op "invoke".
	Invoke *InvokeRequest `json:"invoke,omitempty"`
	// ProcStart is the process to start, for op "proc_start".
	ProcStart *ProcStart `json:"proc_start,omitempty"`
	// Proc names a process and what to do with it, for the other proc_*
	// operations.
	Proc *ProcRequest `json:"proc,omitempty"`
	// Port is the TCP port to connect to, for op "port_dial".
	Port int `json:"port,omitempty"`
	// Capture asks for the filesystem's changes, for op "capture".
	Capture *CaptureRequest `json:"capture,omitempty"`
}

// UserInfo answers op "user": who a user spec is inside the sandbox.
type UserInfo struct {
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Home  string `json:"home"`
	Error string `json:"error,omitempty"`
}

// ExecRequest runs one process.
type ExecRequest struct {
	Argv []string          `json:"argv"`
	Env  map[string]string `json:"env,omitempty"`
	Cwd  string            `json:"cwd,omitempty"`
	// User is a name from the sandbox's /etc/passwd, or "uid" or "uid:gid".
	// Empty means root.
	User string `json:"user,omitempty"`
	// Stdin, when StreamStdin is false, is the whole standard input.
	Stdin []byte `json:"stdin,omitempty"`
	// StreamStdin says stdin arrives in frames after the request, ended by a
	// stdin-EOF frame.
	StreamStdin bool `json:"stream_stdin,omitempty"`
	// TimeoutMs kills the process group after this long; 0 means no limit.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// MaxOutput caps the bytes forwarded from each of stdout and stderr; the rest
	// is read and dropped. 0 means no cap.
	MaxOutput int64 `json:"max_output,omitempty"`
}

// ExecResult is the last frame of an exec stream.
type ExecResult struct {
	ExitCode        int     `json:"exit_code"`
	Signal          string  `json:"signal,omitempty"`
	DurationMs      float64 `json:"duration_ms"`
	CPUMs           float64 `json:"cpu_ms"`
	PeakMemoryKB    int64   `json:"peak_memory_kb"`
	OOMKilled       bool    `json:"oom_killed"`
	TimedOut        bool    `json:"timed_out"`
	StdoutTruncated bool    `json:"stdout_truncated,omitempty"`
	StderrTruncated bool    `json:"stderr_truncated,omitempty"`
	// StartError says why the process could not be started (no such command,
	// no such user or directory). ExitCode is then 126 or 127, as a shell's.
	StartError string `json:"start_error,omitempty"`
}

// Pong answers a ping.
type Pong struct {
	PID int `json:"pid"`
}

// DiskState answers a disk probe: Full says a small write to the container's
// own filesystem fails for want of space (its disk limit is used up).
type DiskState struct {
	Full  bool   `json:"full"`
	Error string `json:"error,omitempty"`
}

// PtyOpen starts a new terminal session.
type PtyOpen struct {
	Argv []string          `json:"argv"`
	Env  map[string]string `json:"env,omitempty"`
	Cwd  string            `json:"cwd,omitempty"`
	User string            `json:"user,omitempty"`
	Cols uint16            `json:"cols"`
	Rows uint16            `json:"rows"`
	// IdleTimeoutMs kills the session after this long with no viewer.
	IdleTimeoutMs int64 `json:"idle_timeout_ms,omitempty"`
}

// PtyAttach opens a terminal stream: to a new session (Open set) or an existing
// one (Session set). The agent answers with PtyInfo (or PtyInfo.Error), then
// the recent output when Replay is set, then live output frames; input frames
// and PtyControl JSON frames go the other way. The last frame from the agent is
// PtyExit when the session's process ends.
type PtyAttach struct {
	Session string   `json:"session,omitempty"`
	Open    *PtyOpen `json:"open,omitempty"`
	Replay  bool     `json:"replay,omitempty"`
}

// PtyControl is a control message from a viewer: "resize" or "signal".
type PtyControl struct {
	Type   string `json:"type"`
	Cols   uint16 `json:"cols,omitempty"`
	Rows   uint16 `json:"rows,omitempty"`
	Signal string `json:"signal,omitempty"`
}

// PtyInfo describes a session.
type PtyInfo struct {
	ID        string    `json:"id"`
	Argv      []string  `json:"argv"`
	PID       int       `json:"pid"`
	Cols      uint16    `json:"cols"`
	Rows      uint16    `json:"rows"`
	CreatedAt time.Time `json:"created_at"`
	Viewers   int       `json:"viewers"`
	Exited    bool      `json:"exited"`
	ExitCode  int       `json:"exit_code"`
	Code      string    `json:"code,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// PtyExit ends a terminal stream: the session's process ended.
type PtyExit struct {
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
}

// PtyList answers op "pty_list".
type PtyList struct {
	Sessions []PtyInfo `json:"sessions"`
}

// OpResult answers an operation that returns nothing but success or an error.
type OpResult struct {
	// Code classes the failures the host acts on (CodeRefused,
	// CodeNoSession); Error says what failed, for people.
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

// Classes of failure an OpResult's or PtyInfo's Code carries.
const (
	// CodeRefused: nothing listens on the port dialled.
	CodeRefused = "refused"
	// CodeNoSession: no terminal session has the ID named.
	CodeNoSession = "no_session"
	// CodeTooLarge: the answer would hold more than the agent may (a
	// capture of more changed paths than its memory share lists).
	CodeTooLarge = "too_large"
)

// RunRequest runs one piece of dynamic code in a runner's runtime host, in a
// scratch directory that is emptied after the run.
type RunRequest struct {
	Code  string            `json:"code"`
	Stdin []byte            `json:"stdin,omitempty"`
	Files []RunFile         `json:"files,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	// TimeoutMs is the wall-clock limit; the run's processes are killed then.
	TimeoutMs int64 `json:"timeout_ms"`
	// MaxOutput caps each of stdout and stderr.
	MaxOutput int64 `json:"max_output"`
	// MaxFileBytes caps the bytes of files returned from the scratch directory.
	MaxFileBytes int64 `json:"max_file_bytes"`
}

// RunFile is a file put into, or returned from, a run's scratch directory. Path
// is relative to it.
type RunFile struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
	Mode uint32 `json:"mode,omitempty"`
}

// RunResult is the last frame of a run stream; the output came before it as
// stdout and stderr frames.
type RunResult struct {
	ExitCode        int       `json:"exit_code"`
	Signal          string    `json:"signal,omitempty"`
	DurationMs      float64   `json:"duration_ms"`
	CPUMs           float64   `json:"cpu_ms"`
	PeakMemoryKB    int64     `json:"peak_memory_kb"`
	OOMKilled       bool      `json:"oom_killed,omitempty"`
	TimedOut        bool      `json:"timed_out,omitempty"`
	StdoutTruncated bool      `json:"stdout_truncated,omitempty"`
	StderrTruncated bool      `json:"stderr_truncated,omitempty"`
	Files           []RunFile `json:"files,omitempty"`
	FilesTruncated  bool      `json:"files_truncated,omitempty"`
	// Leftover says processes of the run outlived it (they were killed).
	Leftover bool `json:"leftover,omitempty"`
	// Error says why the run could not happen at all.
	Error string `json:"error,omitempty"`
	// Recycle says this runner must not serve again: a timeout, an OOM kill, a
	// leftover process, a scratch directory that would not clear, or a runtime
	// host that died.
	Recycle bool `json:"recycle,omitempty"`
}

// AppInit loads an app's code into the runner's runtime host, once.
type AppInit struct {
	Code      string            `json:"code"`
	Env       map[string]string `json:"env,omitempty"`
	TimeoutMs int64             `json:"timeout_ms"`
	MaxOutput int64             `json:"max_output"`
}

// InvokeRequest starts an app invocation. Message is handed to the runtime host
// as it is; from then on the agent relays JSON frames both ways between the
// stream and the host until the host answers with op "response" or "error".
// When the host fails to answer in time, or dies, the agent itself answers with
// an "error" message carrying timed_out or recycle.
type InvokeRequest struct {
	TimeoutMs int64           `json:"timeout_ms"`
	Message   json.RawMessage `json:"message"`
}
