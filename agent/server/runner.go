package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bothy/bothy/agent/wire"
)

// scratchParent is the runner's writable tmpfs; scratchDir, inside it, is the
// working directory of every run and is emptied after each.
const (
	scratchParent = "/tmp"
	scratchDir    = "/tmp/run"
)

// hostGrace is how long past a run's deadline the agent waits for the host to
// answer before it kills the host.
const hostGrace = 2 * time.Second

func (s *Server) serveRun(ctx context.Context, st net.Conn, out *wire.FrameSender, req *wire.RunRequest) {
	h := s.host
	if h == nil {
		_ = out.SendJSON(wire.RunResult{Error: "this container is not a runner", Recycle: true})
		return
	}
	h.op.Lock()
	defer h.op.Unlock()
	if !h.alive() {
		_ = out.SendJSON(wire.RunResult{Error: "the runtime host has exited", Recycle: true})
		return
	}
	inputs, err := prepareScratch(req.Files)
	if err != nil {
		_ = out.SendJSON(wire.RunResult{Error: err.Error(), Recycle: errors.Is(err, errScratch)})
		return
	}
	oomBefore := oomKills()
	var res wire.RunResult
	wait := noWait
	switch h.kind {
	case wire.RuntimePython:
		res = s.runForked(ctx, h, out, req)
	case wire.RuntimeNode:
		res = s.runInHost(ctx, h, out, req)
	case wire.RuntimeBash:
		var er wire.ExecResult
		er, wait = s.exec(ctx, st, out, &wire.ExecRequest{
			Argv: []string{"bash", "-c", req.Code}, Env: runEnv(req.Env), Cwd: scratchDir,
			Stdin: req.Stdin, TimeoutMs: req.TimeoutMs, MaxOutput: req.MaxOutput,
		})
		res = wire.RunResult{ExitCode: er.ExitCode, Signal: er.Signal, DurationMs: er.DurationMs, CPUMs: er.CPUMs,
			PeakMemoryKB: er.PeakMemoryKB, OOMKilled: er.OOMKilled, TimedOut: er.TimedOut,
			StdoutTruncated: er.StdoutTruncated, StderrTruncated: er.StderrTruncated, Error: er.StartError}
	}
	if !res.OOMKilled && res.Signal == "SIGKILL" && oomKills() > oomBefore {
		res.OOMKilled = true
	}
	if h.kind != wire.RuntimePython && killLeftovers(h) {
		res.Leftover = true
	}
	res.Files, res.FilesTruncated = collectScratch(inputs, req.MaxFileBytes)
	if err := clearScratch(); err != nil {
		res.Recycle = true
	}
	if res.TimedOut || res.OOMKilled || res.Leftover || !h.alive() {
		res.Recycle = true
	}
	_ = out.SendJSON(res)
	if h.after != nil {
		h.after()
		h.after = nil
	}
	_ = st.SetReadDeadline(time.Now().Add(resultDrain))
	wait()
}

// runEnv is a run's environment: a plain one, not the agent's.
func runEnv(extra map[string]string) map[string]string {
	env := map[string]string{"HOME": scratchParent, "PATH": defaultPath, "LANG": "C.UTF-8", "TMPDIR": scratchParent}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

// spareWait bounds the wait for the Python host to fork a spare process.
const spareWait = 10 * time.Second

// runForked hands the run to a process the Python host forked ahead of time,
// with stdio pipes the agent made, and streams its output. The process reports
// its own exit; only when it was killed does the host say how it ended.
func (s *Server) runForked(ctx context.Context, h *runtimeHost, out *wire.FrameSender, req *wire.RunRequest) wire.RunResult {
	stdinR, stdinW, stdoutR, stdoutW, stderrR, stderrW, err := openPipes(&wire.ExecRequest{StreamStdin: true})
	if err != nil {
		return wire.RunResult{Error: err.Error()}
	}
	defer stdoutR.Close()
	defer stderrR.Close()
	msg, _ := json.Marshal(map[string]any{"code": req.Code, "env": runEnv(req.Env), "cwd": scratchDir, "timeout_ms": req.TimeoutMs})
	started := time.Now()
	// A spare that died waiting (the OOM killer may pick one) is replaced,
	// and the next one tried.
	var sp spare
	for attempt := 0; attempt < 3; attempt++ {
		err = nil
		select {
		case sp = <-h.spares:
		case <-time.After(spareWait):
			err = errors.New("the runtime host has no process ready")
		}
		if err != nil {
			break
		}
		if err = sendMessage(sp.conn, msg, int(stdinR.Fd()), int(stdoutW.Fd()), int(stderrW.Fd())); err == nil {
			break
		}
		_ = syscall.Kill(sp.pid, syscall.SIGKILL)
		sp.conn.Close()
		_ = h.sendJSON(map[string]string{"op": "fork"})
	}
	stdinR.Close()
	stdoutW.Close()
	stderrW.Close()
	if err != nil {
		stdinW.Close()
		h.kill()
		return wire.RunResult{Error: "no process of the runtime host took the run: " + err.Error(), Recycle: true}
	}
	// After the answer is sent: the run's process, which reported but may
	// linger, is killed without being called a leftover (an honest one is
	// waiting to exit), and its replacement is forked. On two cores, tearing
	// down a process and forking one compete with the answer for the CPU.
	h.after = func() {
		_ = syscall.Kill(-sp.pid, syscall.SIGKILL)
		_ = syscall.Kill(sp.pid, syscall.SIGKILL)
		sp.conn.Close()
		_ = h.sendJSON(map[string]string{"op": "fork"})
	}
	go func() {
		_, _ = stdinW.Write(req.Stdin)
		stdinW.Close()
	}()
	pumped := pumpOutputs(out, stdoutR, stderrR, req.MaxOutput)
	pid := sp.pid
	var timedOut atomic.Bool
	kill := func() { _ = syscall.Kill(-pid, syscall.SIGKILL) }
	timer := time.AfterFunc(time.Duration(req.TimeoutMs)*time.Millisecond, func() { timedOut.Store(true); kill() })
	defer timer.Stop()
	stop := context.AfterFunc(ctx, kill)
	defer stop()
	var m hostMessage
	b, _, err := readMessage(sp.conn)
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	elapsed := time.Since(started)
	if err != nil {
		// Killed before it could report: the host knows how it ended.
		if err := h.sendJSON(map[string]any{"op": "wait", "pid": pid}); err != nil {
			return wire.RunResult{Error: "runtime host: " + err.Error(), Recycle: true}
		}
		if err := h.recv(&m, spareWait); err != nil || m.Op != "waited" {
			h.kill()
			return wire.RunResult{Error: fmt.Sprintf("runtime host: %v %s", err, m.Message), Recycle: true}
		}
	}
	outTrunc, errTrunc := pumped()
	res := wire.RunResult{
		DurationMs: float64(elapsed.Microseconds()) / 1000, CPUMs: m.CPUMs, PeakMemoryKB: m.MaxRSSKB,
		TimedOut: timedOut.Load(), StdoutTruncated: outTrunc, StderrTruncated: errTrunc,
		Leftover: killLeftovers(h),
	}
	res.ExitCode, res.Signal = exitOf(syscall.WaitStatus(m.Status))
	return res
}

// runInHost has the Node host run the code in its own process; the output comes
// back in its answer.
func (s *Server) runInHost(ctx context.Context, h *runtimeHost, out *wire.FrameSender, req *wire.RunRequest) wire.RunResult {
	started := time.Now()
	msg := map[string]any{"op": "run", "code": req.Code, "env": runEnv(req.Env), "cwd": scratchDir,
		"timeout_ms": req.TimeoutMs, "max_output": req.MaxOutput, "stdin": req.Stdin}
	if err := h.sendJSON(msg); err != nil {
		h.kill()
		return wire.RunResult{Error: "send to runtime host: " + err.Error(), Recycle: true}
	}
	stop := context.AfterFunc(ctx, h.kill)
	defer stop()
	var m hostMessage
	if err := h.recv(&m, time.Duration(req.TimeoutMs)*time.Millisecond+hostGrace); err != nil || m.Op != "exit" {
		// A loop the host cannot interrupt, or a host that died: it goes.
		h.kill()
		oom := oomKills() > 0
		return wire.RunResult{ExitCode: 137, Signal: "SIGKILL", TimedOut: !oom, OOMKilled: oom, Recycle: true,
			DurationMs: float64(time.Since(started).Microseconds()) / 1000}
	}
	for typ, data := range map[byte][]byte{wire.FrameStdout: m.Stdout, wire.FrameStderr: m.Stderr} {
		for len(data) > 0 {
			n := min(len(data), wire.MaxFrame)
			_ = out.Send(typ, data[:n])
			data = data[n:]
		}
	}
	return wire.RunResult{
		ExitCode: m.ExitCode, TimedOut: m.TimedOut, CPUMs: m.CPUMs, PeakMemoryKB: m.MaxRSSKB,
		DurationMs:      float64(time.Since(started).Microseconds()) / 1000,
		StdoutTruncated: m.StdoutTruncated, StderrTruncated: m.StderrTruncated,
	}
}

var errScratch = errors.New("scratch directory")

// prepareScratch makes an empty scratch directory holding files, and returns
// what it wrote, to tell the run's own files from its inputs afterwards.
func prepareScratch(files []wire.RunFile) (map[string][]byte, error) {
	// The last run's scratch directory was cleared after it (or its runner
	// retired), so an existing one is empty.
	if fi, err := os.Lstat(scratchDir); err != nil || !fi.IsDir() {
		if err := clearScratch(); err != nil {
			return nil, err
		}
	}
	root, err := os.OpenRoot(scratchDir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errScratch, err)
	}
	defer root.Close()
	inputs := make(map[string][]byte, len(files))
	for _, f := range files {
		p, err := wire.ScratchPath(f.Path)
		if err != nil {
			return nil, err
		}
		if dir := path.Dir(p); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("file %s: %v", f.Path, err)
			}
		}
		mode := os.FileMode(f.Mode) & 0o777
		if mode == 0 {
			mode = 0o644
		}
		w, err := root.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
		if err != nil {
			return nil, fmt.Errorf("file %s: %v", f.Path, err)
		}
		_, err = w.Write(f.Data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, fmt.Errorf("file %s: %v", f.Path, err)
		}
		inputs[p] = f.Data
	}
	return inputs, nil
}

// clearScratch leaves an empty scratch directory, whatever the last run did to it.
func clearScratch() error {
	if err := os.RemoveAll(scratchDir); err != nil {
		// A run may have taken the write bit off its own directories.
		_ = filepath.WalkDir(scratchDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		if err := os.RemoveAll(scratchDir); err != nil {
			return fmt.Errorf("%w: %v", errScratch, err)
		}
	}
	if err := os.Mkdir(scratchDir, 0o700); err != nil {
		return fmt.Errorf("%w: %v", errScratch, err)
	}
	return nil
}

// collectScratch returns the regular files the run made or changed in the
// scratch directory, up to limit bytes in all. Links are never followed: the
// walk stays inside an os.Root and opens nothing but regular files.
func collectScratch(inputs map[string][]byte, limit int64) (files []wire.RunFile, truncated bool) {
	if fi, err := os.Lstat(scratchDir); err != nil || !fi.IsDir() {
		return nil, false
	}
	root, err := os.OpenRoot(scratchDir)
	if err != nil {
		return nil, false
	}
	defer root.Close()
	var total int64
	_ = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return nil
		}
		if total+fi.Size() > limit {
			truncated = true
			return nil
		}
		data, err := io.ReadAll(io.LimitReader(f, limit-total))
		if err != nil {
			return nil
		}
		if in, ok := inputs[p]; ok && bytes.Equal(in, data) {
			return nil
		}
		total += int64(len(data))
		files = append(files, wire.RunFile{Path: p, Data: data, Mode: uint32(fi.Mode().Perm())})
		return nil
	})
	return files, truncated
}

// killLeftovers kills every process in the container but the agent, its
// runtime host and the host's own children (the Python host's spare processes,
// and the run in progress, which its caller kills), and reports whether there
// were any. Zombies waiting for the reaper do not count. A run's descendants
// are never the host's children: an orphan is re-parented to the agent.
func killLeftovers(h *runtimeHost) bool {
	found := false
	for round := 0; round < 3; round++ {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return found
		}
		any := false
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == 1 || pid == os.Getpid() || pid == h.pid {
				continue
			}
			stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
			if err != nil {
				continue
			}
			// After the command's closing parenthesis: state, then ppid.
			i := bytes.LastIndexByte(stat, ')')
			if i < 0 {
				continue
			}
			f := bytes.Fields(stat[i+1:])
			if len(f) < 2 || f[0][0] == 'Z' || (h.pid > 0 && string(f[1]) == strconv.Itoa(h.pid)) {
				continue
			}
			any = true
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if !any {
			return found
		}
		found = true
		time.Sleep(5 * time.Millisecond)
	}
	return found
}

func (s *Server) serveAppInit(out *wire.FrameSender, req *wire.AppInit) {
	h := s.host
	if h == nil || h.ctl == nil {
		_ = out.SendJSON(wire.OpResult{Error: "this container is not an app runner"})
		return
	}
	h.op.Lock()
	defer h.op.Unlock()
	msg := map[string]any{"op": "app_init", "code": req.Code, "env": req.Env, "max_output": req.MaxOutput}
	if err := h.sendJSON(msg); err != nil {
		_ = out.SendJSON(wire.OpResult{Error: "runtime host: " + err.Error()})
		return
	}
	var m hostMessage
	err := h.recv(&m, time.Duration(req.TimeoutMs)*time.Millisecond)
	switch {
	case err != nil:
		h.kill()
		_ = out.SendJSON(wire.OpResult{Error: "the app did not load in time: " + err.Error()})
	case m.Op != "ready":
		_ = out.SendJSON(wire.OpResult{Error: m.Message})
	default:
		_ = out.SendJSON(wire.OpResult{})
	}
}

// serveInvoke hands one request to the app and relays messages between the
// stream and the host until the host answers.
func (s *Server) serveInvoke(ctx context.Context, st net.Conn, out *wire.FrameSender, req *wire.InvokeRequest) {
	h := s.host
	fail := func(msg string, timedOut bool) {
		_ = out.SendJSON(map[string]any{"op": "error", "message": msg, "timed_out": timedOut, "recycle": true})
	}
	if h == nil || h.ctl == nil {
		fail("this container is not an app runner", false)
		return
	}
	h.op.Lock()
	defer h.op.Unlock()
	if !h.alive() {
		fail("the runtime host has exited", false)
		return
	}
	if err := h.send(req.Message); err != nil {
		h.kill()
		fail("runtime host: "+err.Error(), false)
		return
	}
	var timedOut atomic.Bool
	timer := time.AfterFunc(time.Duration(req.TimeoutMs)*time.Millisecond, func() { timedOut.Store(true); h.kill() })
	defer timer.Stop()
	// bothy -> host: storage results, until the stream ends.
	var answered atomic.Bool
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		for {
			typ, payload, err := wire.ReadFrame(st)
			if err != nil {
				if !answered.Load() {
					h.kill() // bothy gave up on the request
				}
				return
			}
			if typ == wire.FrameJSON && h.send(payload) != nil {
				return
			}
		}
	}()
	stop := context.AfterFunc(ctx, h.kill)
	defer stop()
	for {
		b, err := h.next(0)
		if err != nil {
			if timedOut.Load() {
				fail("the app did not answer within its time limit", true)
			} else {
				fail(fmt.Sprintf("the app's runtime host died (%s): %v", h.death(), err), false)
			}
			break
		}
		var m hostMessage
		if json.Unmarshal(b, &m) != nil {
			h.kill()
			fail("the app's runtime host sent a malformed message", false)
			break
		}
		last := m.Op == "response" || m.Op == "error"
		if last {
			// Before bothy can see the answer and close the stream, so
			// that the relay does not take the close for a caller gone away.
			answered.Store(true)
		}
		if err := out.Send(wire.FrameJSON, b); err != nil {
			h.kill()
			break
		}
		if last {
			break
		}
	}
	answered.Store(true)
	_ = st.SetReadDeadline(time.Now())
	<-relayDone
}
