// Package process is the background processes of sandboxes: started
// detached through the agent, which owns them, so they outlive the client
// that started them and restarts of bothy; listed, followed from any
// output offset, fed on stdin, signalled, killed and waited for.
package process

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/orchestrator"
)

// Limits of a start request.
const (
	MaxTag     = 128
	MaxArgv    = 4096
	MaxTimeout = 7 * 24 * time.Hour
	// MaxStdinWrite bounds one write to a process's stdin.
	MaxStdinWrite = 1 << 20
)

// Sandboxes reaches a sandbox's agent: the orchestrator, which wakes a
// stopped sandbox, checks its owner and counts the call as activity.
type Sandboxes interface {
	Attach(ctx context.Context, owner, id string, fn func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error) error
}

// Service runs background processes in sandboxes.
type Service struct {
	sandboxes Sandboxes
}

// New returns the background processes over sandboxes.
func New(sandboxes Sandboxes) *Service { return &Service{sandboxes: sandboxes} }

// StartOptions is a process to start.
type StartOptions struct {
	// Argv runs a program; Shell runs a line with /bin/sh -c. Exactly one.
	Argv  []string
	Shell string
	Env   map[string]string
	// Cwd and User default to the sandbox's workdir and user.
	Cwd  string
	User string
	// Tag is a label to find the process by.
	Tag string
	// Stdin keeps its standard input open for writes.
	Stdin bool
	// Timeout kills the process group after this long; 0 is no limit.
	Timeout time.Duration
	// LogBytes is how much recent output is kept (0: agent.ProcLogBytes).
	LogBytes int64
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (o StartOptions) validate() error {
	bad := func(format string, args ...any) error {
		return cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
	}
	switch {
	case len(o.Argv) > 0 && o.Shell != "":
		return bad("cmd: give cmd or shell, not both")
	case len(o.Argv) == 0 && o.Shell == "":
		return bad("cmd: give cmd (an argument vector) or shell (a command line)")
	case len(o.Argv) > MaxArgv:
		return bad("cmd: at most %d arguments", MaxArgv)
	case len(o.Argv) > 0 && o.Argv[0] == "":
		return bad("cmd: the program name is empty")
	case strings.ContainsRune(o.Shell, 0):
		return bad("shell: contains a NUL byte")
	case len(o.Tag) > MaxTag || !utf8.ValidString(o.Tag) || strings.ContainsRune(o.Tag, 0):
		return bad("tag: at most %d bytes of UTF-8 without NUL", MaxTag)
	case o.Cwd != "" && (!path.IsAbs(o.Cwd) || strings.ContainsRune(o.Cwd, 0)):
		return bad("cwd: must be an absolute path, got %q", o.Cwd)
	case o.Timeout < 0 || o.Timeout > MaxTimeout:
		return bad("timeout_ms: must be between 0 (no limit) and %d", MaxTimeout.Milliseconds())
	case o.LogBytes != 0 && (o.LogBytes < wire.MinProcLogBytes || o.LogBytes > wire.MaxProcLogBytes):
		return bad("log_bytes: must be between %d and %d (0: %d)", wire.MinProcLogBytes, wire.MaxProcLogBytes, wire.ProcLogBytes)
	}
	for _, a := range o.Argv {
		if strings.ContainsRune(a, 0) {
			return bad("cmd: an argument contains a NUL byte")
		}
	}
	for k, v := range o.Env {
		if !envName.MatchString(k) || strings.ContainsRune(v, 0) {
			return bad("env: %q is not a variable name (or its value has a NUL byte)", k)
		}
	}
	return nil
}

// Info describes a process.
type Info struct {
	PID       int
	Tag       string
	Argv      []string
	Cwd       string
	User      string
	State     string // Running or Exited
	StartedAt time.Time
	// The rest is known once the process exited.
	EndedAt      *time.Time
	ExitCode     *int
	Signal       string
	TimedOut     bool
	CPUMs        float64
	PeakMemoryKB int64
	// StdinOpen says writes to its stdin are accepted.
	StdinOpen bool
	// OutputBytes is all its output so far; OutputFrom the offset of the
	// oldest output still kept.
	OutputBytes, OutputFrom int64
}

// Record is one record of a process's output.
type Record struct {
	Type   string // RecordOutput, RecordGap or RecordEnd
	Stream string // "stdout" or "stderr", of an output record
	Offset int64
	// To ends a gap: the output from Offset to To was dropped.
	To int64
	// Data is an output record's bytes, good only until the function
	// the record was handed to returns.
	Data []byte
	// Info describes the process, in the end record.
	Info *Info
}

// Record types.
const (
	RecordOutput = "output"
	RecordGap    = "gap"
	RecordEnd    = "end"
)

// States of a process.
const (
	Running = wire.ProcRunning
	Exited  = wire.ProcExited
)

func infoOf(p wire.ProcInfo) Info {
	return Info{PID: p.PID, Tag: p.Tag, Argv: p.Argv, Cwd: p.Cwd, User: p.User, State: p.State, StartedAt: p.StartedAt,
		EndedAt: p.EndedAt, ExitCode: p.ExitCode, Signal: p.Signal, TimedOut: p.TimedOut, CPUMs: p.CPUMs,
		PeakMemoryKB: p.PeakMemoryKB, StdinOpen: p.StdinOpen, OutputBytes: p.OutputBytes, OutputFrom: p.OutputFrom}
}

// Start starts a background process in owner's sandbox id.
func (s *Service) Start(ctx context.Context, owner, id string, o StartOptions) (Info, error) {
	if err := o.validate(); err != nil {
		return Info{}, err
	}
	var info Info
	err := s.sandboxes.Attach(ctx, owner, id, func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error {
		req := wire.ProcStart{Argv: o.Argv, Env: sb.CommandEnv(o.Env), Cwd: o.Cwd, User: o.User, Tag: o.Tag, Stdin: o.Stdin,
			TimeoutMs: o.Timeout.Milliseconds(), LogBytes: o.LogBytes}
		if o.Shell != "" {
			req.Argv = []string{"/bin/sh", "-c", o.Shell}
		}
		if req.User == "" {
			req.User = sb.Spec.User
		}
		if req.Cwd == "" {
			req.Cwd = sb.Spec.Workdir
		}
		p, err := conn.StartProc(ctx, req)
		info = infoOf(p)
		return classify(err, id, 0)
	})
	return info, err
}

// List describes the running and recently exited processes of owner's
// sandbox id (those tagged tag, when it is not empty).
func (s *Service) List(ctx context.Context, owner, id, tag string) ([]Info, error) {
	a, err := s.op(ctx, owner, id, wire.ProcList, wire.ProcRequest{Tag: tag})
	out := make([]Info, 0, len(a.List))
	for _, p := range a.List {
		out = append(out, infoOf(p))
	}
	return out, err
}

// Get describes process pid.
func (s *Service) Get(ctx context.Context, owner, id string, pid int) (Info, error) {
	return s.info(ctx, owner, id, wire.ProcGet, wire.ProcRequest{PID: pid})
}

// Signal sends a signal ("SIGTERM", "TERM", "INT"...) to process pid's group.
func (s *Service) Signal(ctx context.Context, owner, id string, pid int, signal string) (Info, error) {
	return s.info(ctx, owner, id, wire.ProcSignal, wire.ProcRequest{PID: pid, Signal: signal})
}

// Kill kills process pid's whole group and waits for the process to exit.
func (s *Service) Kill(ctx context.Context, owner, id string, pid int) (Info, error) {
	return s.info(ctx, owner, id, wire.ProcKill, wire.ProcRequest{PID: pid})
}

// Stdin writes data to process pid's standard input, and closes it after
// when closeAfter is set.
func (s *Service) Stdin(ctx context.Context, owner, id string, pid int, data []byte, closeAfter bool) (Info, error) {
	if len(data) > MaxStdinWrite {
		return Info{}, cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("stdin: at most %d bytes in one write", MaxStdinWrite))
	}
	return s.info(ctx, owner, id, wire.ProcStdin, wire.ProcRequest{PID: pid, Data: data, Close: closeAfter})
}

// Wait waits until process pid exits, or timeout passes (0: as long as ctx
// lasts), and describes it.
func (s *Service) Wait(ctx context.Context, owner, id string, pid int, timeout time.Duration) (Info, error) {
	return s.info(ctx, owner, id, wire.ProcWait, wire.ProcRequest{PID: pid, TimeoutMs: timeout.Milliseconds()})
}

// Logs streams process pid's output to fn from offset from: what is kept,
// then, with follow, what comes until the process's output ends. The last
// record is "end".
func (s *Service) Logs(ctx context.Context, owner, id string, pid int, from int64, follow bool, fn func(Record) error) error {
	if from < 0 {
		return cerrdefs.ErrInvalidArgument.WithMessage("from: must not be negative")
	}
	return s.sandboxes.Attach(ctx, owner, id, func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
		err := conn.ProcLogs(ctx, wire.ProcRequest{PID: pid, From: from, Follow: follow}, func(r wire.ProcRecord) error {
			rec := Record{Type: r.Type, Stream: r.Stream, Offset: r.Offset, To: r.To, Data: r.Data}
			if r.Info != nil {
				info := infoOf(*r.Info)
				rec.Info = &info
			}
			return fn(rec)
		})
		return classify(err, id, pid)
	})
}

func (s *Service) info(ctx context.Context, owner, id string, op wire.ProcOp, req wire.ProcRequest) (Info, error) {
	a, err := s.op(ctx, owner, id, op, req)
	if err != nil {
		return Info{}, err
	}
	if a.Info == nil {
		return Info{}, fmt.Errorf("%s: the agent answered without the process", op)
	}
	return infoOf(*a.Info), nil
}

func (s *Service) op(ctx context.Context, owner, id string, op wire.ProcOp, req wire.ProcRequest) (wire.ProcAnswer, error) {
	var a wire.ProcAnswer
	err := s.sandboxes.Attach(ctx, owner, id, func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
		var err error
		a, err = conn.Proc(ctx, op, req)
		return classify(err, id, req.PID)
	})
	return a, err
}

// classify turns the agent's refusals into errdefs classes.
func classify(err error, id string, pid int) error {
	var pe *agent.ProcError
	if !errors.As(err, &pe) {
		return err
	}
	switch pe.Code {
	case wire.ProcNotFound:
		return cerrdefs.ErrNotFound.WithMessage(fmt.Sprintf("no process %d in sandbox %s", pid, id))
	case wire.ProcInvalid:
		return cerrdefs.ErrInvalidArgument.WithMessage(pe.Msg)
	case wire.ProcConflict:
		return cerrdefs.ErrConflict.WithMessage(pe.Msg)
	}
	return err
}
