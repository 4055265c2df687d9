package agent

import (
	_ "embed"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// The runtime hosts: long-lived interpreters that run dynamic code for a runner.
var (
	//go:embed hosts/python.py
	pythonHost string
	//go:embed hosts/node.js
	nodeHost string
)

// Runtimes a runner may serve.
const (
	RuntimePython = "python"
	RuntimeNode   = "node"
	RuntimeBash   = "bash"
)

// maxHostMessage bounds one message from a runtime host: a node run's output
// (two capped streams, base64) or an app's response.
const maxHostMessage = 64 << 20

// hostReadyTimeout bounds a runtime host's start.
const hostReadyTimeout = 30 * time.Second

// runtimeHost is the interpreter of a runner, spoken to over a socket pair as
// length-prefixed JSON. It serves one operation at a time.
type runtimeHost struct {
	kind string
	op   sync.Mutex // held for the whole of one run, app_init or invoke
	ctl  *net.UnixConn
	pid  int
	dead chan struct{} // closed when the host process has exited
}

// hostMessage is the part of a host's message the agent looks at.
type hostMessage struct {
	Op       string  `json:"op"`
	PID      int     `json:"pid,omitempty"`
	Status   int     `json:"status,omitempty"`
	CPUMs    float64 `json:"cpu_ms,omitempty"`
	MaxRSSKB int64   `json:"maxrss_kb,omitempty"`
	Message  string  `json:"message,omitempty"`
	// A node run answers with its whole output.
	ExitCode        int    `json:"exit_code,omitempty"`
	TimedOut        bool   `json:"timed_out,omitempty"`
	Stdout          []byte `json:"stdout,omitempty"`
	Stderr          []byte `json:"stderr,omitempty"`
	StdoutTruncated bool   `json:"stdout_truncated,omitempty"`
	StderrTruncated bool   `json:"stderr_truncated,omitempty"`
}

// StartRuntime starts the runtime host of kind (python or node; bash needs
// none) and waits until it has loaded. From then on the server answers run,
// app_init and invoke.
func (s *Server) StartRuntime(kind string) error {
	var argv []string
	switch kind {
	case RuntimePython:
		argv = []string{"python3", "-I", "-c", pythonHost}
	case RuntimeNode:
		argv = []string{"node", "-e", nodeHost}
	case RuntimeBash:
		s.host = &runtimeHost{kind: kind}
		return nil
	default:
		return fmt.Errorf("unknown runtime %q", kind)
	}
	path, err := lookPath(argv[0], envValue(s.baseEnv, "PATH"), "/")
	if err != nil {
		return err
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socketpair: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "host-ctl"), os.NewFile(uintptr(fds[1]), "host-ctl")
	defer theirs.Close()
	fc, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	env := setEnv(append([]string(nil), s.baseEnv...), "HOME", scratchParent)
	attr := &os.ProcAttr{
		Dir: scratchParent, Env: env,
		Files: []*os.File{devnull, os.Stderr, os.Stderr, theirs},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	proc, waitCh, err := s.reaper.start(func() (*os.Process, error) { return os.StartProcess(path, argv, attr) })
	if err != nil {
		fc.Close()
		return fmt.Errorf("start %s host: %w", kind, err)
	}
	h := &runtimeHost{kind: kind, ctl: fc.(*net.UnixConn), pid: proc.Pid, dead: make(chan struct{})}
	proc.Release()
	go func() {
		ws := <-waitCh
		s.log.Warn("runtime host exited", "runtime", kind, "status", ws.status)
		close(h.dead)
		h.ctl.Close()
	}()
	_ = h.ctl.SetReadDeadline(time.Now().Add(hostReadyTimeout))
	var m hostMessage
	if err := h.recv(&m); err != nil || m.Op != "ready" {
		h.kill()
		return fmt.Errorf("%s host did not start: %v %s", kind, err, m.Message)
	}
	_ = h.ctl.SetReadDeadline(time.Time{})
	s.host = h
	return nil
}

// kill ends the host and every process of its group.
func (h *runtimeHost) kill() {
	if h.pid > 0 {
		_ = syscall.Kill(-h.pid, syscall.SIGKILL)
	}
}

// alive reports whether the host process still runs.
func (h *runtimeHost) alive() bool {
	if h.dead == nil {
		return true
	}
	select {
	case <-h.dead:
		return false
	default:
		return true
	}
}

// send writes one message, passing fds alongside its first bytes.
func (h *runtimeHost) send(payload []byte, fds ...int) error {
	var head [4]byte
	binary.BigEndian.PutUint32(head[:], uint32(len(payload)))
	if len(fds) > 0 {
		if _, _, err := h.ctl.WriteMsgUnix(head[:], syscall.UnixRights(fds...), nil); err != nil {
			return err
		}
		_, err := h.ctl.Write(payload)
		return err
	}
	_, err := h.ctl.Write(append(head[:], payload...))
	return err
}

func (h *runtimeHost) sendJSON(v any, fds ...int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return h.send(b, fds...)
}

// recvRaw reads one message.
func (h *runtimeHost) recvRaw() ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(h.ctl, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n > maxHostMessage {
		return nil, errors.New("runtime host message too large")
	}
	b := make([]byte, n)
	_, err := io.ReadFull(h.ctl, b)
	return b, err
}

func (h *runtimeHost) recv(m *hostMessage) error {
	b, err := h.recvRaw()
	if err != nil {
		return err
	}
	return json.Unmarshal(b, m)
}
