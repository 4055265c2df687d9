package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
)

// Exec limits.
const (
	MaxExecTimeout   = time.Hour
	DefaultMaxOutput = 1 << 20
	MaxOutputCap     = 64 << 20
	maxArgv          = 4096
	maxArgvBytes     = 256 << 10
)

// ExecOptions is one command to run in a sandbox.
type ExecOptions struct {
	// Argv runs a program; Shell runs a line with /bin/sh -c. Exactly one is set.
	Argv  []string
	Shell string
	Env   map[string]string
	Cwd   string
	User  string
	// Stdin is the whole standard input, when it is not streamed.
	Stdin   []byte
	Timeout time.Duration
	// MaxOutput caps each of stdout and stderr; 0 means no cap (streams only).
	MaxOutput int64
}

// ExecResult is how a command ended. Its output went to the writers the
// caller gave.
type ExecResult struct {
	ExitCode int
	// Signal names the signal that killed the command, if one did.
	Signal       string
	DurationMs   float64
	CPUMs        float64
	PeakMemoryKB int64
	OOMKilled    bool
	TimedOut     bool
	// Truncated says output passed the MaxOutput cap and was dropped.
	Truncated bool
	// StartError says why the command could not start (no such program,
	// user or directory); ExitCode is then 126 or 127, as a shell's.
	StartError string
}

// Validate refuses options that cannot run: it is done by Exec, and by
// callers that must refuse before they answer anything.
func (e ExecOptions) Validate() error {
	var v invalid
	switch {
	case len(e.Argv) > 0 && e.Shell != "":
		v.add("cmd", "give cmd or shell, not both")
	case len(e.Argv) == 0 && e.Shell == "":
		v.add("cmd", "give cmd (an argument vector) or shell (a command line)")
	case len(e.Argv) > 0 && e.Argv[0] == "":
		v.add("cmd", "the program name is empty")
	}
	size := len(e.Shell)
	for _, a := range e.Argv {
		size += len(a)
		if strings.ContainsRune(a, 0) {
			v.add("cmd", "an argument contains a NUL byte")
			break
		}
	}
	if len(e.Argv) > maxArgv || size > maxArgvBytes {
		v.add("cmd", "longer than %d arguments or %d bytes", maxArgv, maxArgvBytes)
	}
	if strings.ContainsRune(e.Shell, 0) {
		v.add("shell", "contains a NUL byte")
	}
	checkEnv(&v, "env", e.Env)
	if e.Cwd != "" && (!path.IsAbs(e.Cwd) || strings.ContainsRune(e.Cwd, 0)) {
		v.add("cwd", "must be an absolute path, got %q", e.Cwd)
	}
	if e.User != "" && !userSpec.MatchString(e.User) {
		v.add("user", "%q is not a user name or uid[:gid]", e.User)
	}
	if e.Timeout < 0 || e.Timeout > MaxExecTimeout {
		v.add("timeout_ms", "must be between 0 (the default) and %d", MaxExecTimeout.Milliseconds())
	}
	if e.MaxOutput < 0 || e.MaxOutput > MaxOutputCap {
		v.add("max_output_bytes", "must be between 0 and %d", MaxOutputCap)
	}
	return v.err()
}

// Exec runs a command in owner's sandbox, waking it if it is stopped. Output
// goes to stdout and stderr as it arrives; stdin, when not nil, is streamed.
// A non-zero exit status is in the result, not an error.
func (o *Orchestrator) Exec(ctx context.Context, owner, id string, opts ExecOptions, stdin io.Reader, stdout, stderr io.Writer) (ExecResult, error) {
	if err := opts.Validate(); err != nil {
		return ExecResult{}, err
	}
	var res ExecResult
	err := o.Attach(ctx, owner, id, func(ctx context.Context, sb Sandbox, conn *agent.Conn) error {
		req := wire.ExecRequest{
			Argv: opts.Argv, Env: sb.CommandEnv(opts.Env), Cwd: opts.Cwd, User: opts.User,
			Stdin: opts.Stdin, TimeoutMs: opts.Timeout.Milliseconds(), MaxOutput: opts.MaxOutput,
		}
		if opts.Shell != "" {
			req.Argv = []string{"/bin/sh", "-c", opts.Shell}
		}
		if req.User == "" {
			req.User = sb.Spec.User
		}
		if req.Cwd == "" {
			req.Cwd = sb.Spec.Workdir
		}
		r, err := conn.Exec(ctx, req, stdin, stdout, stderr)
		if err != nil {
			return fmt.Errorf("exec in sandbox %s: %w", id, err)
		}
		res = ExecResult{
			ExitCode: r.ExitCode, Signal: r.Signal, DurationMs: r.DurationMs, CPUMs: r.CPUMs,
			PeakMemoryKB: r.PeakMemoryKB, OOMKilled: r.OOMKilled, TimedOut: r.TimedOut,
			Truncated: r.StdoutTruncated || r.StderrTruncated, StartError: r.StartError,
		}
		return nil
	})
	return res, err
}

// Attach runs fn with the agent connection of owner's sandbox, waking the
// sandbox if it is stopped. It is how every data-plane call reaches a sandbox:
// the call counts as activity for the idle timeout, and a stop or delete of the
// sandbox cancels fn's context (and is then reported as a conflict).
//
// A sandbox whose container exited behind bothy's back (its processes
// took all its memory, or killed its init) is recorded as stopped, with
// why, and started again for the call.
func (o *Orchestrator) Attach(ctx context.Context, owner, id string, fn func(ctx context.Context, sb Sandbox, conn *agent.Conn) error) error {
	err := o.attach(ctx, owner, id, fn)
	var exited *exitedError
	if errors.As(err, &exited) {
		if err := o.stopExited(ctx, id, exited.container, exited.reason); err != nil {
			return err
		}
		err = o.attach(ctx, owner, id, fn)
	}
	return err
}

func (o *Orchestrator) attach(ctx context.Context, owner, id string, fn func(ctx context.Context, sb Sandbox, conn *agent.Conn) error) error {
	// The call's setup is a call of its own, and what it made is on the
	// heap: a stream's fn waits for as long as the stream lasts, on a
	// stack as deep as the frames under it are big (issue 22).
	c, err := o.beginCall(ctx, owner, id)
	if err != nil {
		return err
	}
	defer c.end()
	err = fn(c.ctx, c.sb, c.conn)
	if err != nil && c.calls.Err() != nil {
		return cerrdefs.ErrConflict.WithMessage("sandbox " + id + " was stopped or deleted during the call")
	}
	return err
}

// call is a data-plane call under way: the sandbox it holds, its agent
// connection, and a context that a stop or delete of the sandbox cancels.
type call struct {
	ctx   context.Context
	calls context.Context // the sandbox's, which interrupt cancels
	sb    Sandbox
	conn  *agent.Conn
	end   func()
}

// beginCall acquires id for a data-plane call; the call's end releases it.
//
//go:noinline
func (o *Orchestrator) beginCall(ctx context.Context, owner, id string) (*call, error) {
	l, sb, release, err := o.acquire(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	calls := l.callContext()
	stop := context.AfterFunc(calls, cancel)
	end := func() {
		stop()
		cancel()
		release()
	}
	conn, err := o.agentOf(ctx, l, sb)
	if err != nil {
		end()
		return nil, err
	}
	return &call{ctx: ctx, calls: calls, sb: sb, conn: conn, end: end}, nil
}

// Wake makes id running, as a data-plane call does: a stopped sandbox is
// started, a paused one resumed (the answer's Woken says so), and one in
// any other state than running is a conflict.
func (o *Orchestrator) Wake(ctx context.Context, owner, id string) (Sandbox, error) {
	_, sb, release, err := o.acquire(ctx, owner, id)
	if err != nil {
		return Sandbox{}, err
	}
	release()
	return sb, nil
}

// acquire holds id's read lock for a data-plane call, starting the sandbox first
// when it is stopped, resuming it when it is paused. release ends the call and records the activity.
func (o *Orchestrator) acquire(ctx context.Context, owner, id string) (*live, Sandbox, func(), error) {
	woken := false
	for range 3 {
		unlock := o.locks.RLock(id)
		sb, err := o.Get(ctx, owner, id)
		if err != nil {
			unlock()
			return nil, Sandbox{}, nil, err
		}
		switch sb.State {
		case StateRunning:
			l := o.lookupLive(id)
			if l == nil {
				unlock()
				return nil, Sandbox{}, nil, cerrdefs.ErrUnavailable.WithMessage("sandbox " + id + " has no agent channel")
			}
			l.inflight.Add(1)
			l.active(o.now(), "API calls")
			sb.Woken = woken
			return l, sb, func() {
				l.active(o.now(), "API calls")
				l.inflight.Add(-1)
				unlock()
			}, nil
		case StateStopped:
			unlock()
			if _, err := o.Start(ctx, owner, id); err != nil {
				return nil, Sandbox{}, nil, err
			}
			woken = true
		case StatePaused:
			unlock()
			if _, err := o.Resume(ctx, owner, id); err != nil {
				return nil, Sandbox{}, nil, err
			}
			woken = true
		default:
			unlock()
			msg := fmt.Sprintf("sandbox %s is %s", id, sb.State)
			if sb.Error != "" {
				msg += ": " + sb.Error
			}
			return nil, Sandbox{}, nil, cerrdefs.ErrConflict.WithMessage(msg)
		}
	}
	return nil, Sandbox{}, nil, cerrdefs.ErrUnavailable.WithMessage("sandbox " + id + " keeps stopping")
}

// ErrStdinEnded, from an Exec's stdin, ends the command's standard input
// while the reading of stdin goes on until another error (a reader that
// also watches for the call's end keeps being read).
var ErrStdinEnded = agent.ErrStdinEnded

// loopbackDialer is a Runtime that connects to a container's loopback
// itself (the Docker runtime, on the engine's host).
type loopbackDialer interface {
	DialLoopback(ctx context.Context, id string, port int) (net.Conn, error)
}

// DialLoopback connects to TCP port on the loopback of sb (running, in an
// Attach) without its agent, where the runtime can: a connection of the
// kernel's, which costs no copy through the agent channel.
// agent.ErrNotListening says nothing listens there; errors.ErrUnsupported
// that the runtime cannot, and the agent must carry the connection.
func (o *Orchestrator) DialLoopback(ctx context.Context, sb Sandbox, port int) (net.Conn, error) {
	d, ok := o.rt.(loopbackDialer)
	if !ok || sb.ContainerID == "" {
		return nil, errors.ErrUnsupported
	}
	c, err := d.DialLoopback(ctx, sb.ContainerID, port)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, agent.ErrNotListening
	}
	return c, err
}
