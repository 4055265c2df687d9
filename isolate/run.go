package isolate

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/supervisor"
)

// Run modes.
const (
	ModeProcess   = "process"
	ModeEphemeral = "ephemeral"
)

// Limits on one run's input and output.
const (
	MaxCodeBytes     = 1 << 20
	MaxInputBytes    = 4 << 20 // code, stdin and files together
	MaxInputFiles    = 1000
	DefaultTimeout   = 10 * time.Second
	MaxTimeout       = 5 * time.Minute
	DefaultMaxOutput = 1 << 20
	MaxOutput        = 16 << 20
	MaxReturnedFiles = 8 << 20
	MinMemoryMB      = 64
	MaxMemoryMB      = 4096
)

// File is a file of a run's scratch directory: given to the code before it
// runs, or left there by it.
type File struct {
	Path string
	Data []byte
	Mode uint32
}

// RunOptions is one piece of dynamic code to run.
type RunOptions struct {
	Runtime   string
	Code      string
	Stdin     []byte
	Files     []File
	Env       map[string]string
	Timeout   time.Duration
	MemoryMB  int64
	Mode      string
	MaxOutput int64
}

// RunOutput is how a run ended and the files it left; its output went to
// the writers the caller gave.
type RunOutput struct {
	ExitCode int
	// Signal names the signal that killed the code, if one did.
	Signal       string
	DurationMs   float64
	CPUMs        float64
	PeakMemoryKB int64
	OOMKilled    bool
	TimedOut     bool
	// Truncated says output or returned files passed their caps.
	Truncated bool
	Files     []File
	// Leftover says processes of the run outlived it (they were killed).
	Leftover bool
	// Runner is the runner's ID; Warm says it was warm when the run began.
	Runner string
	Warm   bool
	// WallMs is the time bothy spent on the run, the lease included.
	WallMs float64

	excerpt *excerpt
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate checks o and fills in its defaults.
func (s *Service) validate(o *RunOptions) error {
	bad := func(format string, a ...any) error {
		return cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, a...))
	}
	switch o.Runtime {
	case wire.RuntimePython, wire.RuntimeNode, wire.RuntimeBash:
	case "":
		return bad("runtime is required: python, node or bash")
	default:
		return bad("runtime %q is not one of python, node, bash", o.Runtime)
	}
	switch o.Mode {
	case "":
		o.Mode = ModeProcess
	case ModeProcess, ModeEphemeral:
	default:
		return bad("mode %q is not one of process, ephemeral", o.Mode)
	}
	if strings.TrimSpace(o.Code) == "" {
		return bad("code is required")
	}
	if len(o.Code) > MaxCodeBytes {
		return bad("code is %d bytes; the limit is %d", len(o.Code), MaxCodeBytes)
	}
	switch {
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	case o.Timeout < time.Millisecond || o.Timeout > MaxTimeout:
		return bad("timeout_ms must be between 1 and %d", MaxTimeout.Milliseconds())
	}
	switch {
	case o.MemoryMB == 0:
		o.MemoryMB = s.cfg.DefaultMemoryMB
	case o.MemoryMB < MinMemoryMB || o.MemoryMB > MaxMemoryMB:
		return bad("memory_mb must be between %d and %d", MinMemoryMB, MaxMemoryMB)
	}
	o.MemoryMB = memoryClass(o.MemoryMB)
	switch {
	case o.MaxOutput == 0:
		o.MaxOutput = DefaultMaxOutput
	case o.MaxOutput < 0 || o.MaxOutput > MaxOutput:
		return bad("max_output_bytes must be between 1 and %d", MaxOutput)
	}
	total := len(o.Code) + len(o.Stdin)
	if len(o.Files) > MaxInputFiles {
		return bad("%d files; the limit is %d", len(o.Files), MaxInputFiles)
	}
	seen := map[string]bool{}
	for _, f := range o.Files {
		clean, err := wire.ScratchPath(f.Path)
		if err != nil {
			return errclass.Wrap(cerrdefs.ErrInvalidArgument, nil, err.Error())
		}
		if seen[clean] {
			return bad("file %q is given twice", f.Path)
		}
		seen[clean] = true
		if f.Mode > 0o777 {
			return bad("file %q: mode %o is not a permission mode", f.Path, f.Mode)
		}
		total += len(f.Data)
	}
	if total > MaxInputBytes {
		return bad("code, stdin and files are %d bytes together; the limit is %d", total, MaxInputBytes)
	}
	for k, v := range o.Env {
		if !envName.MatchString(k) || strings.HasPrefix(k, "BOTHY_") || strings.ContainsRune(v, 0) {
			return bad("env: %q is not a valid variable name (or it has a NUL byte)", k)
		}
	}
	return nil
}

// Run runs o for owner, writing its output to stdout and stderr. In process
// mode the runner stays leased to owner for its next runs; in ephemeral mode
// it is destroyed after this one.
//
// The run is admitted against owner's rate and concurrency limits first, and
// recorded in the ledger when it ends.
func (s *Service) Run(ctx context.Context, owner string, o RunOptions, stdout, stderr io.Writer) (RunOutput, error) {
	if err := s.validate(&o); err != nil {
		return RunOutput{}, err
	}
	if s.cfg.Limits != nil {
		release, err := s.cfg.Limits.Admit(owner, "", supervisor.Rate{})
		if err != nil {
			return RunOutput{}, err
		}
		defer release()
	}
	out, err := s.run(ctx, owner, o, stdout, stderr)
	if err == nil && s.cfg.Ledger != nil {
		s.cfg.Ledger.Record(runEntry(owner, o, out))
	}
	return out, err
}

// run leases a runner, runs o in it, and recycles or keeps the runner.
func (s *Service) run(ctx context.Context, owner string, o RunOptions, stdout, stderr io.Writer) (RunOutput, error) {
	t0 := time.Now()
	head := &excerpt{}
	stdout, stderr = io.MultiWriter(stdout, &head.out), io.MultiWriter(stderr, &head.err)
	prof := profile{runtime: o.Runtime, memoryMB: o.MemoryMB}
	leaseKey := owner + "\x00" + prof.String()
	var r *runner
	warm := true
	if o.Mode == ModeProcess {
		r = s.takeLease(leaseKey)
	}
	if r == nil {
		if err := s.hold(owner); err != nil {
			return RunOutput{}, err
		}
		var err error
		if r, warm, err = s.pool(prof).take(ctx); err != nil {
			s.unhold(owner)
			return RunOutput{}, err
		}
		s.mu.Lock()
		r.owner = owner
		s.mu.Unlock()
	}
	files := make([]wire.RunFile, 0, len(o.Files))
	for _, f := range o.Files {
		files = append(files, wire.RunFile{Path: f.Path, Data: f.Data, Mode: f.Mode})
	}
	res, err := r.conn.Run(ctx, wire.RunRequest{
		Code: o.Code, Stdin: o.Stdin, Files: files, Env: o.Env,
		TimeoutMs: o.Timeout.Milliseconds(), MaxOutput: o.MaxOutput, MaxFileBytes: MaxReturnedFiles,
	}, stdout, stderr)
	r.runs++
	r.lastUsed = time.Now()
	if err != nil || res.Recycle || res.Error != "" || o.Mode == ModeEphemeral || r.runs >= s.cfg.MaxRuns || ctx.Err() != nil {
		s.destroy(r)
	} else {
		s.giveLease(leaseKey, r)
	}
	if err != nil {
		if ctx.Err() != nil {
			return RunOutput{}, ctx.Err()
		}
		return RunOutput{}, errclass.Wrap(cerrdefs.ErrUnavailable, err, "the runner failed")
	}
	if res.Error != "" {
		return RunOutput{}, cerrdefs.ErrUnavailable.WithMessage("the runner could not run the code: " + res.Error)
	}
	out := RunOutput{
		ExitCode: res.ExitCode, Signal: res.Signal, DurationMs: res.DurationMs, CPUMs: res.CPUMs,
		PeakMemoryKB: res.PeakMemoryKB, OOMKilled: res.OOMKilled, TimedOut: res.TimedOut,
		Truncated: res.StdoutTruncated || res.StderrTruncated || res.FilesTruncated,
		Files:     make([]File, 0, len(res.Files)), Leftover: res.Leftover,
		Runner: r.id, Warm: warm, WallMs: float64(time.Since(t0).Microseconds()) / 1000,
		excerpt: head,
	}
	for _, f := range res.Files {
		out.Files = append(out.Files, File{Path: f.Path, Data: f.Data, Mode: f.Mode})
	}
	return out, nil
}

// takeLease returns an idle runner leased to key, if there is one.
func (s *Service) takeLease(key string) *runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.leases[key]
	for len(rs) > 0 {
		r := rs[len(rs)-1]
		rs = rs[:len(rs)-1]
		if r.ep.Connected() {
			s.leases[key] = rs
			return r
		}
		go s.destroy(r)
	}
	delete(s.leases, key)
	return nil
}

// giveLease puts r back as an idle runner leased to key.
func (s *Service) giveLease(key string, r *runner) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.life.Err() != nil {
		go s.destroy(r)
		return
	}
	s.leases[key] = append(s.leases[key], r)
}
