package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"github.com/bothy/bothy/agent/ptyfd"
	"github.com/bothy/bothy/agent/wire"
)

// Terminal session limits.
const (
	// Scrollback is how much recent output a session keeps for reattach.
	Scrollback = 256 << 10
	// viewerQueue is how many output chunks a viewer may lag behind before it
	// is dropped, so that a slow viewer never stalls the others.
	viewerQueue         = 256
	defaultPtyIdle      = 10 * time.Minute
	maxPtySessions      = 64
	ptyReapEvery        = time.Second
	exitedSessionLinger = 30 * time.Second
	// coalesce is how much queued output one frame carries at most.
	coalesce = 256 << 10
)

// ptyManager owns the terminal sessions of one sandbox. Sessions live in the
// agent, so they outlive the connections (and the bothy) that opened them.
type ptyManager struct {
	srv *Server

	mu       sync.Mutex
	sessions map[string]*ptySession

	stop chan struct{}
	wg   sync.WaitGroup
}

func newPtyManager(srv *Server) *ptyManager {
	m := &ptyManager{srv: srv, sessions: map[string]*ptySession{}, stop: make(chan struct{})}
	m.wg.Add(1)
	go m.reapLoop()
	return m
}

// close kills every session and waits for their goroutines.
func (m *ptyManager) close() {
	close(m.stop)
	m.mu.Lock()
	all := make([]*ptySession, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	for _, s := range all {
		s.kill()
		s.master.Close()
	}
	m.wg.Wait()
}

// ptySession is one process on a pseudo-terminal, with its scrollback and viewers.
type ptySession struct {
	id      string
	argv    []string
	pid     int
	created time.Time
	master  *os.File // non-blocking, so that closing it ends a pending read
	tty     string   // the terminal's path, /dev/pts/N
	idle    time.Duration

	mu       sync.Mutex
	cols     uint16
	rows     uint16
	scroll   *ring // the last Scrollback bytes of output
	viewers  map[*viewer]struct{}
	exit     *wire.PtyExit
	detached time.Time // when the last viewer left (or the session began)

	done chan struct{} // closed once the process has exited and output drained
}

// viewer is one attached stream. out is never closed; end is closed (under the
// session's lock) when the viewer detaches, is dropped for lagging, or the
// session's process exits, after the last chunk it will get is queued.
type viewer struct {
	out     chan []byte
	end     chan struct{}
	dropped bool
}

func (m *ptyManager) open(o *wire.PtyOpen) (*ptySession, error) {
	m.mu.Lock()
	n := len(m.sessions)
	m.mu.Unlock()
	if n >= maxPtySessions {
		return nil, fmt.Errorf("too many terminal sessions (%d)", maxPtySessions)
	}
	id, err := lookupUser(o.User)
	if err != nil {
		return nil, err
	}
	argv := o.Argv
	if len(argv) == 0 {
		argv = []string{loginShell(id)}
	}
	if argv[0] == "" {
		return nil, errors.New("empty command")
	}
	env := m.srv.environ(id, o.Env)
	if envValue(env, "TERM") == "" {
		env = append(env, "TERM=xterm-256color")
	}
	cwd := id.dir(o.Cwd)
	if fi, err := os.Stat(cwd); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("working directory %q does not exist", cwd)
	}
	path, err := lookPath(argv[0], envValue(env, "PATH"), cwd)
	if err != nil {
		return nil, err
	}
	cols, rows := o.Cols, o.Rows
	if cols == 0 || rows == 0 {
		cols, rows = 80, 24
	}
	master, slave, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open pty: %w", err)
	}
	if err := pty.Setsize(master, &pty.Winsize{Cols: cols, Rows: rows}); err != nil {
		master.Close()
		slave.Close()
		return nil, fmt.Errorf("size pty: %w", err)
	}
	attr := &os.ProcAttr{
		Dir: cwd, Env: env, Files: []*os.File{slave, slave, slave},
		Sys: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0},
	}
	if os.Getuid() == 0 {
		attr.Sys.Credential = &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: id.groups}
		// The terminal must belong to the user for a login-like shell.
		_ = slave.Chown(int(id.uid), -1)
	}
	proc, waitCh, err := m.srv.children().start(func() (*os.Process, error) {
		return os.StartProcess(path, argv, attr)
	})
	tty := slave.Name()
	slave.Close()
	if err != nil {
		master.Close()
		return nil, err
	}
	// pty.Open's file is in blocking mode (Fd() makes it so); a non-blocking
	// duplicate goes through the poller, and Close interrupts its reads.
	master, err = ptyfd.Pollable(master)
	if err != nil {
		_ = syscall.Kill(proc.Pid, syscall.SIGKILL)
		return nil, err
	}
	s := &ptySession{
		id: newSessionID(), argv: argv, pid: proc.Pid, created: time.Now(), master: master, tty: tty,
		idle: time.Duration(o.IdleTimeoutMs) * time.Millisecond,
		cols: cols, rows: rows, scroll: newRing(Scrollback), viewers: map[*viewer]struct{}{}, detached: time.Now(),
		done: make(chan struct{}),
	}
	proc.Release()
	if s.idle <= 0 {
		s.idle = defaultPtyIdle
	}
	m.mu.Lock()
	m.sessions[s.id] = s
	m.mu.Unlock()
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		s.pump(waitCh)
	}()
	return s, nil
}

// loginShell is the user's shell from the passwd file when it is executable,
// else bash or sh.
func loginShell(id identity) string {
	for _, sh := range []string{id.shell, "/bin/bash", "/bin/sh"} {
		if sh != "" && isExecutable(sh) && !strings.HasSuffix(sh, "/nologin") && !strings.HasSuffix(sh, "/false") {
			return sh
		}
	}
	return "/bin/sh"
}

func newSessionID() string {
	b := make([]byte, 8)
	_, _ = io.ReadFull(rand.Reader, b)
	return "pty-" + hex.EncodeToString(b)
}

// pump copies the terminal's output to the scrollback and the viewers until
// the process exits, then records the exit and ends every viewer.
func (s *ptySession) pump(waitCh <-chan exitStatus) {
	buf := make([]byte, 64<<10)
	for {
		n, err := s.master.Read(buf)
		if n > 0 {
			s.broadcast(append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			break // EIO once the last process holding the terminal is gone
		}
	}
	ws := <-waitCh
	exit := &wire.PtyExit{}
	switch {
	case ws.status.Exited():
		exit.ExitCode = ws.status.ExitStatus()
	case ws.status.Signaled():
		exit.ExitCode = 128 + int(ws.status.Signal())
		exit.Signal = unix.SignalName(ws.status.Signal())
	}
	s.master.Close()
	s.mu.Lock()
	s.exit = exit
	for v := range s.viewers {
		close(v.end)
		delete(s.viewers, v)
	}
	s.detached = time.Now()
	s.mu.Unlock()
	close(s.done)
}

// broadcast queues chunk for every viewer. A viewer whose queue is full is
// dropped when others watch (a slow viewer must not stall them); a sole viewer
// is waited for instead, which holds the process back through the terminal.
func (s *ptySession) broadcast(chunk []byte) {
	s.mu.Lock()
	s.scroll.Write(chunk)
	var wait *viewer
	for v := range s.viewers {
		select {
		case v.out <- chunk:
		default:
			if len(s.viewers) == 1 {
				wait = v
				continue
			}
			v.dropped = true
			close(v.end)
			delete(s.viewers, v)
			s.noteDetach()
		}
	}
	s.mu.Unlock()
	if wait != nil {
		select {
		case wait.out <- chunk:
		case <-wait.end:
		}
	}
}

// noteDetach records when the session lost its last viewer. s.mu is held.
func (s *ptySession) noteDetach() {
	if len(s.viewers) == 0 {
		s.detached = time.Now()
	}
}

// attach adds a viewer, returning the scrollback to replay (when asked) taken at
// the same instant, so nothing is lost or shown twice. An exited session gives a
// nil viewer and its exit.
func (s *ptySession) attach(replay bool) (*viewer, []byte, *wire.PtyExit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var back []byte
	if replay {
		back = s.scroll.Bytes()
	}
	if s.exit != nil {
		return nil, back, s.exit
	}
	v := &viewer{out: make(chan []byte, viewerQueue), end: make(chan struct{})}
	s.viewers[v] = struct{}{}
	return v, back, nil
}

func (s *ptySession) detach(v *viewer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.viewers[v]; ok {
		delete(s.viewers, v)
		close(v.end)
		s.noteDetach()
	}
}

func (s *ptySession) info() wire.PtyInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := wire.PtyInfo{ID: s.id, Argv: s.argv, PID: s.pid, Cols: s.cols, Rows: s.rows, CreatedAt: s.created, Viewers: len(s.viewers)}
	if s.exit != nil {
		in.Exited, in.ExitCode = true, s.exit.ExitCode
	}
	return in
}

func (s *ptySession) resize(cols, rows uint16) error {
	if cols == 0 || rows == 0 || cols > 1000 || rows > 1000 {
		return fmt.Errorf("bad terminal size %dx%d", cols, rows)
	}
	s.mu.Lock()
	s.cols, s.rows = cols, rows
	s.mu.Unlock()
	return ptyfd.SetSize(s.master, cols, rows)
}

// kill ends the session's whole process tree: every process in its session,
// every descendant of those, and every process still holding its terminal (one
// that double-forked into a session of its own, say).
//
// One scan can miss a process forked while it ran (say, by setsid on its way
// to a session of its own, killed before the scan saw its child), so scans
// repeat, a bounded number of times, until one finds nothing alive.
func (s *ptySession) kill() {
	for range 20 {
		pids := sessionTree(s.pid, s.tty)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sessionTree lists the live (not zombie) processes whose session is sid,
// their descendants, and the processes with tty open.
func sessionTree(sid int, tty string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []int{sid}
	}
	var term *unix.Stat_t
	if tty != "" {
		var st unix.Stat_t
		if unix.Stat(tty, &st) == nil {
			term = &st
		}
	}
	parent := map[int]int{}
	inSession := map[int]bool{}
	dead := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: fields start
		// after the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 4 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		psid, _ := strconv.Atoi(f[3])
		parent[pid] = ppid
		inSession[pid] = psid == sid || (term != nil && holds(pid, tty, term))
		if f[0] == "Z" || f[0] == "X" {
			dead[pid] = true
		}
	}
	var out []int
	for pid := range parent {
		if dead[pid] {
			continue
		}
		for p := pid; p > 1; p = parent[p] {
			if inSession[p] || p == sid {
				out = append(out, pid)
				break
			}
			if _, ok := parent[p]; !ok {
				break
			}
		}
	}
	sort.Ints(out)
	return out
}

// holds reports whether process pid has the terminal at path open (term:
// that terminal's identity).
func holds(pid int, path string, term *unix.Stat_t) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if target, err := os.Readlink(dir + "/" + fd.Name()); err != nil || target != path {
			continue
		}
		// The same name may be another devpts's terminal (a container's,
		// seen from the host where a test runs agents): the same device
		// of the same filesystem, or not ours.
		var st unix.Stat_t
		if unix.Stat(dir+"/"+fd.Name(), &st) == nil && st.Dev == term.Dev && st.Rdev == term.Rdev {
			return true
		}
	}
	return false
}

func (m *ptyManager) get(id string) (*ptySession, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	return s, ok
}

func (m *ptyManager) list() []wire.PtyInfo {
	m.mu.Lock()
	all := make([]*ptySession, 0, len(m.sessions))
	for _, s := range m.sessions {
		all = append(all, s)
	}
	m.mu.Unlock()
	out := make([]wire.PtyInfo, 0, len(all))
	for _, s := range all {
		out = append(out, s.info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// noSession is a terminal session ID that names none.
type noSession string

func (id noSession) Error() string { return "no terminal session " + string(id) }

// codeOf is the class an answer carries for err: CodeNoSession, or none.
func codeOf(err error) string {
	var ns noSession
	if errors.As(err, &ns) {
		return wire.CodeNoSession
	}
	return ""
}

// remove kills a session's tree and forgets it once its process is reaped.
func (m *ptyManager) remove(id string) error {
	s, ok := m.get(id)
	if !ok {
		return noSession(id)
	}
	s.kill()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		// Something unkillable holds the terminal: stop reading it anyway.
		s.master.Close()
		<-s.done
	}
	m.mu.Lock()
	delete(m.sessions, id)
	m.mu.Unlock()
	return nil
}

// reapLoop ends sessions left without a viewer longer than their idle time, and
// forgets exited ones nobody watches.
func (m *ptyManager) reapLoop() {
	defer m.wg.Done()
	t := time.NewTicker(ptyReapEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		m.mu.Lock()
		var idle []*ptySession
		for id, s := range m.sessions {
			s.mu.Lock()
			alone := len(s.viewers) == 0
			gone := now.Sub(s.detached)
			exited := s.exit != nil
			s.mu.Unlock()
			switch {
			case alone && exited && gone > min(s.idle, exitedSessionLinger):
				delete(m.sessions, id)
			case alone && !exited && gone > s.idle:
				idle = append(idle, s)
			}
		}
		m.mu.Unlock()
		for _, s := range idle {
			s.kill()
		}
	}
}

// serveAttach runs one terminal stream on st.
func (m *ptyManager) serveAttach(ctx context.Context, st net.Conn, out *wire.FrameSender, req *wire.PtyAttach) {
	var s *ptySession
	var err error
	switch {
	case req == nil:
		err = errors.New("pty_attach without a request")
	case req.Session != "":
		var ok bool
		if s, ok = m.get(req.Session); !ok {
			err = noSession(req.Session)
		}
	case req.Open != nil:
		s, err = m.open(req.Open)
	default:
		err = errors.New("pty_attach needs a session or an open request")
	}
	if err != nil {
		_ = out.SendJSON(wire.PtyInfo{Code: codeOf(err), Error: err.Error()})
		return
	}
	v, back, exit := s.attach(req == nil || req.Replay)
	if err := out.SendJSON(s.info()); err != nil {
		if v != nil {
			s.detach(v)
		}
		return
	}
	for len(back) > 0 {
		n := min(len(back), wire.MaxFrame)
		if out.Send(wire.FrameStdout, back[:n]) != nil {
			break
		}
		back = back[n:]
	}
	if v == nil {
		_ = out.SendJSON(exit)
		return
	}
	// The reader: input and control from the viewer; its end is the detach.
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		defer s.detach(v)
		for {
			typ, payload, err := wire.ReadFrame(st)
			if err != nil {
				return
			}
			switch typ {
			case wire.FrameStdin:
				// A terminal whose process is exiting refuses input (EIO):
				// the viewer stays, to be sent the exit the pump records
				// (a client typing Ctrl-D after "exit" lost it).
				_, _ = s.master.Write(payload)
			case wire.FrameJSON:
				var c wire.PtyControl
				if json.Unmarshal(payload, &c) != nil {
					continue
				}
				switch c.Type {
				case "resize":
					_ = s.resize(c.Cols, c.Rows)
				case "signal":
					if sig := unix.SignalNum(c.Signal); sig != 0 {
						_ = syscall.Kill(-s.pid, sig)
					}
				}
			}
		}
	}()
	stop := context.AfterFunc(ctx, func() { s.detach(v) })
	defer stop()
	// Chunks that queued up while a frame was being sent go out together, so a
	// fast producer costs fewer, larger frames. After end, what is still
	// queued is sent, then the stream ends.
	batch := make([]byte, 0, coalesce)
	for ended := false; !ended; {
		select {
		case c := <-v.out:
			batch = append(batch[:0], c...)
		case <-v.end:
			ended = true
			batch = batch[:0]
		}
	more:
		for ended || len(batch) < coalesce {
			select {
			case c := <-v.out:
				batch = append(batch, c...)
			default:
				break more
			}
		}
		for b := batch; len(b) > 0; {
			n := min(len(b), wire.MaxFrame)
			if out.Send(wire.FrameStdout, b[:n]) != nil {
				s.detach(v)
				ended = true
				break
			}
			b = b[n:]
		}
	}
	s.mu.Lock()
	exit, dropped := s.exit, v.dropped
	s.mu.Unlock()
	if exit != nil && !dropped {
		_ = out.SendJSON(exit)
	}
	// Unblock the reader, whatever the viewer does.
	_ = st.SetReadDeadline(time.Now())
	<-readerDone
}
