package server

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

	"github.com/bothy/bothy/agent/wire"
	"golang.org/x/sys/unix"
)

// The runtime hosts: long-lived interpreters that run dynamic code for a runner.
var (
	//go:embed hosts/python.py
	pythonHost string
	//go:embed hosts/node.js
	nodeHost string
)

// maxHostMessage bounds one message from a runtime host: a node run's output
// (two capped streams, base64) or an app's response.
const maxHostMessage = 64 << 20

// hostReadyTimeout bounds a runtime host's start.
const hostReadyTimeout = 30 * time.Second

// runtimeHost is the interpreter of a runner, spoken to over a socket pair as
// length-prefixed JSON. It serves one operation at a time. One goroutine reads
// its messages: spare processes (with their sockets) go to spares, the rest
// to inbox.
type runtimeHost struct {
	kind string
	op   sync.Mutex // held for the whole of one run, app_init or invoke
	ctl  *net.UnixConn
	pid  int
	dead chan struct{} // closed when the host process has exited
	// exit is how the host ended, once dead is closed.
	exit syscall.WaitStatus

	inbox  chan []byte
	spares chan spare
	closed chan struct{} // closed when the reader stops
	// after, when set, finishes a run once its answer is sent (under op).
	after func()
}

// spare is a process the Python host forked ahead of a run, and the agent's
// end of its socket.
type spare struct {
	pid  int
	conn *net.UnixConn
}

var (
	errHostGone    = errors.New("the runtime host has exited")
	errHostTimeout = errors.New("the runtime host did not answer in time")
)

// death describes how the host ended, waiting a moment for it to be reaped.
func (h *runtimeHost) death() string {
	select {
	case <-h.dead:
		if h.exit.Signaled() {
			return "killed by " + unix.SignalName(h.exit.Signal())
		}
		return fmt.Sprintf("exited with status %d", h.exit.ExitStatus())
	case <-time.After(100 * time.Millisecond):
		return "still running"
	}
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
	case wire.RuntimePython:
		argv = []string{"python3", "-I", "-c", pythonHost}
	case wire.RuntimeNode:
		argv = []string{"node", "-e", nodeHost}
	case wire.RuntimeBash:
		s.host = &runtimeHost{kind: kind}
		return nil
	default:
		return fmt.Errorf("unknown runtime %q", kind)
	}
	path, err := lookPath(argv[0], envValue(s.baseEnv, "PATH"), "/")
	if err != nil {
		return err
	}
	ours, theirs, err := socketPair()
	if err != nil {
		return err
	}
	defer theirs.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		ours.Close()
		return err
	}
	defer devnull.Close()
	env := setEnv(append([]string(nil), s.baseEnv...), "HOME", scratchParent)
	attr := &os.ProcAttr{
		Dir: scratchParent, Env: env,
		Files: []*os.File{devnull, os.Stderr, os.Stderr, theirs},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	}
	proc, waitCh, err := s.children().start(func() (*os.Process, error) { return os.StartProcess(path, argv, attr) })
	if err != nil {
		ours.Close()
		return fmt.Errorf("start %s host: %w", kind, err)
	}
	h := &runtimeHost{kind: kind, ctl: ours, pid: proc.Pid, dead: make(chan struct{}),
		inbox: make(chan []byte, 16), spares: make(chan spare, 8), closed: make(chan struct{})}
	proc.Release()
	go func() {
		ws := <-waitCh
		s.log.Warn("runtime host exited", "runtime", kind, "status", ws.status)
		h.exit = ws.status
		close(h.dead)
		h.ctl.Close()
	}()
	go h.read()
	b, err := h.next(hostReadyTimeout)
	var m hostMessage
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	if err != nil || m.Op != "ready" {
		h.kill()
		return fmt.Errorf("%s host did not start: %v %s", kind, err, m.Message)
	}
	s.host = h
	return nil
}

// socketPair makes a connected pair of unix stream sockets: ours as a conn,
// theirs as a file to hand to a child.
func socketPair() (*net.UnixConn, *os.File, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "host-ctl")
	fc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return fc.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "host-ctl"), nil
}

// read reads the host's messages until its socket closes.
func (h *runtimeHost) read() {
	defer close(h.closed)
	for {
		b, fds, err := readMessage(h.ctl)
		if err != nil {
			return
		}
		var m hostMessage
		if len(fds) == 1 && json.Unmarshal(b, &m) == nil && m.Op == "spare" {
			f := os.NewFile(uintptr(fds[0]), "spare")
			fc, err := net.FileConn(f)
			f.Close()
			if err == nil {
				h.spares <- spare{pid: m.PID, conn: fc.(*net.UnixConn)}
			}
			continue
		}
		for _, fd := range fds {
			syscall.Close(fd)
		}
		h.inbox <- b
	}
}

// readMessage reads one message from c, with any fds passed alongside it.
func readMessage(c *net.UnixConn) ([]byte, []int, error) {
	var head [4]byte
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(head[:], oob)
	if err != nil {
		return nil, nil, err
	}
	if n < 4 {
		if _, err := io.ReadFull(c, head[n:]); err != nil {
			return nil, nil, err
		}
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, m := range msgs {
				got, err := syscall.ParseUnixRights(&m)
				if err == nil {
					fds = append(fds, got...)
				}
			}
		}
	}
	size := binary.BigEndian.Uint32(head[:])
	if size > maxHostMessage {
		return nil, fds, errors.New("runtime host message too large")
	}
	b := make([]byte, size)
	_, err = io.ReadFull(c, b)
	return b, fds, err
}

// next returns the host's next message (not a spare), waiting up to timeout
// (0: for ever).
func (h *runtimeHost) next(timeout time.Duration) ([]byte, error) {
	var expire <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	select {
	case b := <-h.inbox:
		return b, nil
	case <-h.closed:
		select {
		case b := <-h.inbox:
			return b, nil
		default:
			return nil, errHostGone
		}
	case <-expire:
		return nil, errHostTimeout
	}
}

func (h *runtimeHost) recv(m *hostMessage, timeout time.Duration) error {
	b, err := h.next(timeout)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, m)
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

// send writes one message to the host.
func (h *runtimeHost) send(payload []byte) error { return sendMessage(h.ctl, payload) }

func (h *runtimeHost) sendJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return h.send(b)
}

// sendMessage writes one message, passing fds alongside its first bytes.
func sendMessage(c *net.UnixConn, payload []byte, fds ...int) error {
	var head [4]byte
	binary.BigEndian.PutUint32(head[:], uint32(len(payload)))
	if len(fds) > 0 {
		if _, _, err := c.WriteMsgUnix(head[:], syscall.UnixRights(fds...), nil); err != nil {
			return err
		}
		_, err := c.Write(payload)
		return err
	}
	_, err := c.Write(append(head[:], payload...))
	return err
}
