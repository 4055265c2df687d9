package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bothy/bothy/agent/wire"
	"golang.org/x/sys/unix"
)

// pipeGrace is how long an exec waits, after its process exits, for more of
// its stdout and stderr: each pipe is read until end of file, or until it has
// been quiet this long (a background child that keeps a pipe open does not
// hold the answer back). Time spent sending what was read does not count:
// a slow client never loses output that was already in the pipe.
const pipeGrace = 100 * time.Millisecond

// defaultPath is used when the sandbox's environment has no PATH.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// noWait is the join function of an exec that started no goroutine.
func noWait() {}

// exec runs req and streams its output on st. It returns the result to send last,
// and a function that joins the stream's reader once the result is sent.
func (s *Server) exec(ctx context.Context, st net.Conn, out *wire.FrameSender, req *wire.ExecRequest) (wire.ExecResult, func()) {
	cmd, code, err := s.command(req.Argv, req.User, req.Env, req.Cwd)
	if err != nil {
		return startFailure(code, err.Error()), noWait
	}

	stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW, err := openPipes(req)
	if err != nil {
		return startFailure(126, err.Error()), noWait
	}
	defer stdoutR.Close()
	defer stderrR.Close()

	attr := cmd.attr(stdinR, stdoutW, stderrW)
	oomBefore := oomKills()
	started := time.Now()
	proc, waitCh, err := s.children().start(func() (*os.Process, error) {
		return os.StartProcess(cmd.path, req.Argv, attr)
	})
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		if stdinW != nil {
			stdinW.Close()
		}
		return startFailure(126, err.Error()), noWait
	}
	pid := proc.Pid
	proc.Release()

	var timedOut, finished atomic.Bool
	kill := func() {
		if !finished.Load() {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if req.TimeoutMs > 0 {
		t := time.AfterFunc(time.Duration(req.TimeoutMs)*time.Millisecond, func() {
			timedOut.Store(true)
			kill()
		})
		defer t.Stop()
	}

	pumped := pumpOutputs(out, stdoutR, stderrR, req.MaxOutput)

	// The stream's reader: stdin frames when streaming, and in every case the
	// signal that the caller went away, which kills the process group.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		readStdin(st, req, stdinW, kill)
	}()
	if !req.StreamStdin && stdinW != nil {
		go func() {
			_, _ = stdinW.Write(req.Stdin)
			stdinW.Close()
		}()
	}
	stop := context.AfterFunc(ctx, kill)
	defer stop()

	ws := <-waitCh
	finished.Store(true)
	elapsed := time.Since(started)

	outTrunc, errTrunc := pumped()
	res := wire.ExecResult{
		DurationMs:      float64(elapsed.Microseconds()) / 1000,
		CPUMs:           float64(ws.rusage.Utime.Nano()+ws.rusage.Stime.Nano()) / 1e6,
		PeakMemoryKB:    ws.rusage.Maxrss,
		TimedOut:        timedOut.Load(),
		StdoutTruncated: outTrunc,
		StderrTruncated: errTrunc,
	}
	res.ExitCode, res.Signal = exitOf(ws.status)
	res.OOMKilled = res.Signal == "SIGKILL" && !res.TimedOut && oomKills() > oomBefore
	return res, func() { <-readerDone }
}

// resolved is a command ready to start: its program, environment, working
// directory and user.
type resolved struct {
	path string
	env  []string
	cwd  string
	id   identity
}

// command resolves argv as user (empty: root) in cwd (relative to the user's
// home; empty, the home itself) with env added to the sandbox's environment.
// A failure carries the exit code a shell would give: 127 for a program not
// found, 126 otherwise.
func (s *Server) command(argv []string, user string, env map[string]string, cwd string) (resolved, int, error) {
	if len(argv) == 0 || argv[0] == "" {
		return resolved{}, 126, errors.New("empty command")
	}
	id, err := lookupUser(user)
	if err != nil {
		return resolved{}, 126, err
	}
	r := resolved{env: s.environ(id, env), cwd: id.dir(cwd), id: id}
	if fi, err := os.Stat(r.cwd); err != nil || !fi.IsDir() {
		return resolved{}, 126, fmt.Errorf("working directory %q does not exist", r.cwd)
	}
	if r.path, err = lookPath(argv[0], envValue(r.env, "PATH"), r.cwd); err != nil {
		return resolved{}, 127, err
	}
	return r, 0, nil
}

// attr starts the command in a process group of its own, with files as its
// stdin, stdout and stderr, as its user.
func (r resolved) attr(files ...*os.File) *os.ProcAttr {
	attr := &os.ProcAttr{Dir: r.cwd, Env: r.env, Files: files, Sys: &syscall.SysProcAttr{Setpgid: true}}
	if os.Getuid() == 0 {
		attr.Sys.Credential = &syscall.Credential{Uid: r.id.uid, Gid: r.id.gid, Groups: r.id.groups}
	}
	return attr
}

// exitOf is a wait status as a shell reports it: the exit code, or 128 plus
// the signal's number and the signal's name.
func exitOf(ws syscall.WaitStatus) (code int, signal string) {
	switch {
	case ws.Exited():
		return ws.ExitStatus(), ""
	case ws.Signaled():
		return 128 + int(ws.Signal()), unix.SignalName(ws.Signal())
	}
	return 0, ""
}

// pumpOutputs forwards a process's stdout and stderr as frames, each up to
// limit bytes. The function it returns, called once the process has exited,
// waits for both to reach end of file or go quiet for pipeGrace (a
// background child may hold them open), and says which was truncated.
func pumpOutputs(out *wire.FrameSender, stdoutR, stderrR *os.File, limit int64) func() (outTrunc, errTrunc bool) {
	var wg sync.WaitGroup
	var o, e, exited atomic.Bool
	wg.Add(2)
	go func() { defer wg.Done(); pump(stdoutR, out, wire.FrameStdout, limit, &o, &exited) }()
	go func() { defer wg.Done(); pump(stderrR, out, wire.FrameStderr, limit, &e, &exited) }()
	return func() (bool, bool) {
		// The process has exited: a read that waits from now on waits
		// pipeGrace at most (the pumps re-arm it before each read).
		exited.Store(true)
		grace := time.Now().Add(pipeGrace)
		_ = stdoutR.SetReadDeadline(grace)
		_ = stderrR.SetReadDeadline(grace)
		wg.Wait()
		return o.Load(), e.Load()
	}
}

func startFailure(code int, msg string) wire.ExecResult {
	return wire.ExecResult{ExitCode: code, StartError: msg}
}

// openPipes makes the child's stdio. stdinW is nil when the child reads /dev/null.
func openPipes(req *wire.ExecRequest) (stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW *os.File, err error) {
	closeAll := func(fs ...*os.File) {
		for _, f := range fs {
			if f != nil {
				f.Close()
			}
		}
	}
	if req.StreamStdin || len(req.Stdin) > 0 {
		stdinR, stdinW, err = os.Pipe()
	} else {
		stdinR, err = os.Open(os.DevNull)
	}
	if err != nil {
		return
	}
	if stdoutR, stdoutW, err = os.Pipe(); err != nil {
		closeAll(stdinR, stdinW)
		return
	}
	if stderrR, stderrW, err = os.Pipe(); err != nil {
		closeAll(stdinR, stdinW, stdoutR, stdoutW)
		return
	}
	return
}

// pump forwards one output pipe as frames, up to limit bytes (0: no limit), and
// keeps draining past the limit so the process never blocks on a full pipe.
func pump(r *os.File, out *wire.FrameSender, typ byte, limit int64, truncated, exited *atomic.Bool) {
	buf := make([]byte, 32<<10)
	var sent int64
	for {
		if exited.Load() {
			_ = r.SetReadDeadline(time.Now().Add(pipeGrace))
		}
		n, err := r.Read(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) && buffered(r) {
			// The read came late (this goroutine waited for the CPU past
			// the deadline), not the output: there is more to read.
			continue
		}
		if n > 0 {
			chunk := buf[:n]
			if limit > 0 && sent+int64(n) > limit {
				chunk = chunk[:max(limit-sent, 0)]
				truncated.Store(true)
			}
			if len(chunk) > 0 {
				if out.Send(typ, chunk) != nil {
					limit, sent = 1, 1 // the caller is gone: drain only
				}
				sent += int64(len(chunk))
			}
		}
		if err != nil {
			return
		}
	}
}

// buffered says whether a pipe holds bytes not yet read (TIOCINQ is
// FIONREAD).
func buffered(r *os.File) bool {
	rc, err := r.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ) })
	return n > 0
}

// readStdin reads the frames that follow an exec request. With a streamed stdin it
// feeds them to the process; a read error means the caller went away.
func readStdin(st net.Conn, req *wire.ExecRequest, stdinW *os.File, kill func()) {
	streaming := req.StreamStdin && stdinW != nil
	defer func() {
		if streaming {
			stdinW.Close()
		}
	}()
	for {
		typ, payload, err := wire.ReadFrame(st)
		if err != nil {
			kill()
			return
		}
		if !streaming {
			continue
		}
		switch typ {
		case wire.FrameStdin:
			if _, err := stdinW.Write(payload); err != nil {
				stdinW.Close()
				streaming = false
			}
		case wire.FrameStdinEOF:
			stdinW.Close()
			streaming = false
		}
	}
}

// environ is the child's environment: the sandbox's own (less bothy's private
// variables), the user's HOME, USER and LOGNAME, then the request's variables.
func (s *Server) environ(id identity, extra map[string]string) []string {
	env := make([]string, 0, len(s.baseEnv)+len(extra)+4)
	env = append(env, s.baseEnv...)
	env = setEnv(env, "HOME", id.home)
	if id.name != "" {
		env = setEnv(env, "USER", id.name)
		env = setEnv(env, "LOGNAME", id.name)
	}
	for k, v := range extra {
		env = setEnv(env, k, v)
	}
	return env
}

func setEnv(env []string, k, v string) []string {
	prefix := k + "="
	for i, kv := range env {
		if strings.HasPrefix(kv, prefix) {
			env[i] = prefix + v
			return env
		}
	}
	return append(env, prefix+v)
}

func envValue(env []string, k string) string {
	prefix := k + "="
	for _, kv := range env {
		if strings.HasPrefix(kv, prefix) {
			return kv[len(prefix):]
		}
	}
	return ""
}

// baseEnviron is the agent's own environment without bothy's variables, with
// a PATH when the image set none.
func baseEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BOTHY_") {
			env = append(env, kv)
		}
	}
	if envValue(env, "PATH") == "" {
		env = append(env, "PATH="+defaultPath)
	}
	return env
}

var errNotFound = errors.New("command not found")

// lookPath finds name on the child's PATH (not the agent's).
func lookPath(name, pathEnv, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if isExecutable(p) {
			return p, nil
		}
		return "", fmt.Errorf("%s: %w", name, errNotFound)
	}
	if pathEnv == "" {
		pathEnv = defaultPath
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, errNotFound)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// oomKills reads the container's cgroup OOM-kill counter (v2, then v1); -1 when
// neither is readable.
func oomKills() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}
