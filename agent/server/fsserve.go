package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/bothy/bothy/agent/wire"
)

// fsHelperArg is the argument that makes the agent binary a one-shot file
// operation helper, run with a non-root user's credentials.
const fsHelperArg = "fs-helper"

// fsRequestEnv carries the helper's request.
const fsRequestEnv = "BOTHY_FS_REQUEST"

// inputOps read uploaded bytes after the request.
var inputOps = map[wire.FsOp]bool{wire.OpWrite: true, wire.OpTarIn: true, wire.OpRestoreStage: true}

// serveFS runs one file operation for bothy: in this process when the user
// is root (the agent's own credentials), otherwise in a helper process with the
// user's uid, gid and groups, so that the kernel checks every path and
// permission as that user, inside this container.
func (s *Server) serveFS(st net.Conn, out *wire.FrameSender, req *wire.FsRequest) {
	if req == nil {
		_ = out.SendJSON(failCode(wire.FsInvalid, "fs without a request"))
		return
	}
	paths := []string{req.Path}
	if req.Op == wire.OpMove {
		paths = append(paths, req.To)
	}
	for _, p := range paths {
		if err := wire.CheckPath(p); err != nil {
			_ = out.SendJSON(failCode(wire.FsInvalid, err.Error()))
			return
		}
	}
	id, err := lookupUser(req.User)
	if err != nil {
		_ = out.SendJSON(failCode(wire.FsInvalid, err.Error()))
		return
	}
	var in io.Reader
	if inputOps[req.Op] {
		in = &frameReader{r: st}
	}
	data := &frameWriter{out: out}
	if os.Getuid() != 0 || (id.uid == 0 && id.gid == 0) {
		res := fsOp(req, id.home, in, data, func(h wire.FsResult) error { return out.SendJSON(h) })
		_ = out.SendJSON(res)
		return
	}
	s.fsHelper(req, id, in, data, out)
}

// fsHelper runs the operation in a helper process as the user. Its stdin gets
// the uploaded bytes, its stdout carries downloaded bytes, and fd 3 carries the
// JSON header and result, one per line.
func (s *Server) fsHelper(req *wire.FsRequest, id identity, in io.Reader, data io.Writer, out *wire.FrameSender) {
	b, _ := json.Marshal(req)
	inR, inW, err := os.Pipe()
	if err != nil {
		_ = out.SendJSON(fail(err))
		return
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		_ = out.SendJSON(fail(err))
		return
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		_ = out.SendJSON(fail(err))
		return
	}
	attr := &os.ProcAttr{
		Dir:   "/",
		Env:   append(s.environ(id, nil), fsRequestEnv+"="+string(b)),
		Files: []*os.File{inR, outW, os.Stderr, ctlW},
		Sys: &syscall.SysProcAttr{
			Setpgid:    true,
			Credential: &syscall.Credential{Uid: id.uid, Gid: id.gid, Groups: id.groups},
		},
	}
	_, waitCh, err := s.children().start(func() (*os.Process, error) {
		// The running binary itself, whatever now lies at its path (in a
		// pod, the agent is a file of the image, which root in the sandbox
		// may replace).
		return os.StartProcess("/proc/self/exe", []string{"bothy-agent", fsHelperArg}, attr)
	})
	inR.Close()
	outW.Close()
	ctlW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		ctlR.Close()
		_ = out.SendJSON(fail(err))
		return
	}
	var wg sync.WaitGroup
	first := make(chan struct{}) // closed once the first control line is sent
	wg.Add(2)
	go func() { // uploaded bytes to the helper
		defer wg.Done()
		if in != nil {
			_, _ = io.Copy(inW, in)
		}
		inW.Close()
	}()
	go func() { // downloaded bytes from the helper, after the header
		defer wg.Done()
		<-first
		_, _ = io.CopyBuffer(data, outR, make([]byte, copyBuffer))
		outR.Close()
	}()
	// The control lines: the helper writes a header (or its only result)
	// before any data, and its final result after all of it. The first line
	// goes out at once and lets the data through; the rest wait for the data.
	sc := bufio.NewScanner(ctlR)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var later [][]byte
	opened := false
	for sc.Scan() {
		line := append([]byte(nil), sc.Bytes()...)
		if !opened {
			_ = out.Send(wire.FrameJSON, line)
			opened = true
			close(first)
			continue
		}
		later = append(later, line)
	}
	if !opened {
		close(first)
	}
	ctlR.Close()
	wg.Wait()
	for _, line := range later {
		_ = out.Send(wire.FrameJSON, line)
	}
	ws := <-waitCh
	if !opened || !ws.status.Exited() || ws.status.ExitStatus() != 0 {
		_ = out.SendJSON(failCode(wire.FsIO, fmt.Sprintf("file helper failed (%v)", ws.status)))
	}
}

// RunFSHelper is the helper process's main: it runs the request from the
// environment with its own (the user's) credentials.
func RunFSHelper() int {
	var req wire.FsRequest
	if err := json.Unmarshal([]byte(os.Getenv(fsRequestEnv)), &req); err != nil {
		return 2
	}
	ctl := os.NewFile(3, "ctl")
	enc := json.NewEncoder(ctl)
	home, _ := os.UserHomeDir()
	if home == "" {
		home = "/"
	}
	res := fsOp(&req, home, os.Stdin, os.Stdout, func(h wire.FsResult) error { return enc.Encode(h) })
	if err := enc.Encode(res); err != nil {
		return 1
	}
	return 0
}

// frameReader reads uploaded bytes from stdin frames until the stdin-EOF
// frame; a stream that ends before it is an upload cut short.
type frameReader struct {
	r       io.Reader
	buf     []byte // what is left of the current frame
	scratch []byte // the frame buffer, reused
	done    bool
}

func (f *frameReader) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		if f.done {
			return 0, io.EOF
		}
		typ, payload, err := wire.ReadFrameInto(f.r, f.scratch)
		if err == io.EOF {
			// The sender ended without the end frame: its upload broke
			// (its client went away, or sent too much), and what came is
			// not the whole.
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, err
		}
		if cap(payload) > cap(f.scratch) {
			f.scratch = payload
		}
		switch typ {
		case wire.FrameStdin:
			f.buf = payload
		case wire.FrameStdinEOF:
			f.done = true
		}
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	return n, nil
}

// frameWriter sends downloaded bytes as stdout frames.
type frameWriter struct{ out *wire.FrameSender }

func (f *frameWriter) Write(p []byte) (int, error) {
	for b := p; len(b) > 0; {
		n := min(len(b), wire.DataFrame)
		if err := f.out.Send(wire.FrameStdout, b[:n]); err != nil {
			return 0, err
		}
		b = b[n:]
	}
	return len(p), nil
}
