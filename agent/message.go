package agent

// ProtocolVersion is bumped on any incompatible change to the messages below.
const ProtocolVersion = 1

// Hello is the first frame an agent sends on a new connection.
type Hello struct {
	Version int    `json:"version"`
	Token   string `json:"token"`
	PID     int    `json:"pid"`
}

// Welcome is sandboxd's answer to Hello. A non-empty Error means the connection is
// refused and will be closed.
type Welcome struct {
	Error string `json:"error,omitempty"`
}

// Request is the first frame on every stream sandboxd opens.
type Request struct {
	Op   string       `json:"op"` // "exec", "user" or "ping"
	Exec *ExecRequest `json:"exec,omitempty"`
	// User is the user to look up, for op "user".
	User string `json:"user,omitempty"`
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
