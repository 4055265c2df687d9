package wire

import (
	"time"
)

// Process states.
const (
	ProcRunning = "running"
	ProcExited  = "exited"
)

// ProcStart starts a background process.
type ProcStart struct {
	Argv []string          `json:"argv"`
	Env  map[string]string `json:"env,omitempty"`
	Cwd  string            `json:"cwd,omitempty"`
	User string            `json:"user,omitempty"`
	Tag  string            `json:"tag,omitempty"`
	// Stdin keeps a pipe to the process's standard input open for writes;
	// otherwise it reads /dev/null.
	Stdin bool `json:"stdin,omitempty"`
	// TimeoutMs kills the process group after this long; 0 is no limit.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// LogBytes is how much recent output to keep (0: ProcLogBytes).
	LogBytes int64 `json:"log_bytes,omitempty"`
}

// ProcRequest acts on a process, for the proc_* operations.
type ProcRequest struct {
	PID int    `json:"pid,omitempty"`
	Tag string `json:"tag,omitempty"` // proc_list: only this tag
	// From is the output offset proc_logs starts at; Follow waits for more
	// output until the process's log ends.
	From   int64 `json:"from,omitempty"`
	Follow bool  `json:"follow,omitempty"`
	// Signal is the signal's name, for proc_signal ("SIGTERM", "TERM").
	Signal string `json:"signal,omitempty"`
	// Data is written to stdin (proc_stdin); Close closes it after.
	Data  []byte `json:"data,omitempty"`
	Close bool   `json:"close,omitempty"`
	// TimeoutMs bounds proc_wait; 0 waits as long as the caller.
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
}

// ProcInfo describes a background process.
type ProcInfo struct {
	PID       int        `json:"pid"`
	Tag       string     `json:"tag,omitempty"`
	Argv      []string   `json:"argv"`
	Cwd       string     `json:"cwd"`
	User      string     `json:"user,omitempty"`
	State     string     `json:"state"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	ExitCode  *int       `json:"exit_code,omitempty"`
	Signal    string     `json:"signal,omitempty"`
	TimedOut  bool       `json:"timed_out,omitempty"`
	CPUMs     float64    `json:"cpu_ms"`
	// PeakMemoryKB is the peak resident memory of the process (rusage), once
	// it exited.
	PeakMemoryKB int64 `json:"peak_memory_kb,omitempty"`
	// StdinOpen says writes to its stdin are accepted.
	StdinOpen bool `json:"stdin_open,omitempty"`
	// OutputBytes is all the output so far; OutputFrom is the offset of the
	// oldest output still kept.
	OutputBytes int64 `json:"output_bytes"`
	OutputFrom  int64 `json:"output_from"`
}

// ProcAnswer answers the proc_* operations other than proc_logs.
type ProcAnswer struct {
	Info  *ProcInfo  `json:"info,omitempty"`
	List  []ProcInfo `json:"list,omitempty"`
	Code  string     `json:"code,omitempty"` // not_found, invalid, conflict
	Error string     `json:"error,omitempty"`
}

// ProcRecord is one record of a process's output stream (proc_logs):
// "output" (Stream and Data at Offset), "gap" (output from Offset to To was
// dropped), and last "end" (the log ended, with Info, or the stream caught
// up when not following).
type ProcRecord struct {
	Type   string    `json:"type"`
	Stream string    `json:"stream,omitempty"`
	Offset int64     `json:"offset"`
	To     int64     `json:"to,omitempty"`
	Data   []byte    `json:"data,omitempty"`
	Info   *ProcInfo `json:"info,omitempty"`
}

// Errors of the process operations, as ProcAnswer codes.
const (
	ProcNotFound = "not_found"
	ProcInvalid  = "invalid"
	ProcConflict = "conflict"
)

// Bounds of a background process's log.
const (
	// ProcLogBytes is how much recent output a process keeps unless it
	// asks for another amount (ProcStart.LogBytes, at least MinProcLogBytes
	// and at most MaxProcLogBytes); older output is dropped, and a reader
	// asking for it gets a gap record.
	ProcLogBytes    = 8 << 20
	MinProcLogBytes = 4 << 10
	MaxProcLogBytes = 64 << 20
)

// ProcOp names an operation on a background process.
type ProcOp string

// The operations on background processes (proc_start and proc_logs have
// methods of their own).
const (
	ProcList   ProcOp = "proc_list"
	ProcGet    ProcOp = "proc_get"
	ProcSignal ProcOp = "proc_signal"
	ProcKill   ProcOp = "proc_kill"
	ProcStdin  ProcOp = "proc_stdin"
	ProcWait   ProcOp = "proc_wait"
)
