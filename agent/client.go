package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/bothy/bothy/agent/wire"
	"github.com/bothy/bothy/bounds"
)

// cancelGrace is how long Exec waits for the agent's answer after ctx is done.
const cancelGrace = 2 * time.Second

// Conn is bothy's live connection to one agent.
type Conn struct {
	sess *yamux.Session
	// AgentPID is the PID the agent reported (1 inside a container).
	AgentPID int
}

// stream opens a stream for an operation of the request ctx carries (if
// any): the stream's window grows out of that request's key's share of the
// window budget (bounds.Scope.GrowWindow); an operation of bothy's own
// grows it freely.
func (c *Conn) stream(ctx context.Context) (net.Conn, error) {
	st, err := c.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open stream: %w", err)
	}
	var grow func(int64) (func(), bool)
	if sc := bounds.From(ctx); sc != nil {
		grow = sc.GrowWindow
	}
	return wire.NewFlow(st, grow), nil
}

// Close ends the session.
func (c *Conn) Close() error { return c.sess.Close() }

// Done is closed once the session has ended.
func (c *Conn) Done() <-chan struct{} { return c.sess.CloseChan() }

// Ping asks the agent for a pong.
func (c *Conn) Ping(ctx context.Context) error {
	var p wire.Pong
	return c.call(ctx, wire.Request{Op: "ping"}, &p)
}

// Disk probes whether the sandbox's disk limit is used up.
func (c *Conn) Disk(ctx context.Context) (wire.DiskState, error) {
	var d wire.DiskState
	err := c.call(ctx, wire.Request{Op: "disk"}, &d)
	return d, err
}

// User resolves a user spec inside the sandbox. An unknown user is reported in
// UserInfo.Error, not as an error.
func (c *Conn) User(ctx context.Context, user string) (wire.UserInfo, error) {
	var u wire.UserInfo
	err := c.call(ctx, wire.Request{Op: "user", User: user}, &u)
	return u, err
}

// open opens a stream for req and sends it. Until stop is called, the
// stream's reads and writes fail once ctx is done; stop reports false when
// ctx was done first. The caller closes the stream.
func (c *Conn) open(ctx context.Context, req wire.Request) (st net.Conn, stop func() bool, err error) {
	st, err = c.stream(ctx)
	if err != nil {
		return nil, nil, err
	}
	stop = context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	if err := wire.WriteJSON(st, req); err != nil {
		stop()
		st.Close()
		return nil, nil, err
	}
	return st, stop, nil
}

// call sends one request and reads its one JSON answer.
func (c *Conn) call(ctx context.Context, req wire.Request, answer any) error {
	st, stop, err := c.open(ctx, req)
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()
	if err := wire.ReadJSON(st, answer); err != nil {
		return orCanceled(ctx, err)
	}
	return nil
}

// Exec runs req in the sandbox. Output is written to stdout and stderr as it
// arrives. When stdin is not nil it is streamed to the process until it returns
// io.EOF; the caller must make it return once Exec has. Cancelling ctx kills the
// process group. A non-zero exit is a result, not an error.
func (c *Conn) Exec(ctx context.Context, req wire.ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (wire.ExecResult, error) {
	st, err := c.stream(ctx)
	if err != nil {
		return wire.ExecResult{}, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() {
		st.Close()
		_ = st.SetReadDeadline(time.Now().Add(cancelGrace))
	})
	defer stop()

	req.StreamStdin = stdin != nil
	out := wire.NewFrameSender(st)
	if err := out.SendJSON(wire.Request{Op: "exec", Exec: &req}); err != nil {
		return wire.ExecResult{}, fmt.Errorf("send exec request: %w", err)
	}
	if stdin != nil {
		go func() {
			buf := make([]byte, 2<<10)
			ended := false
			for {
				n, err := stdin.Read(buf)
				if n > 0 && !ended && out.Send(wire.FrameStdin, buf[:n]) != nil {
					return
				}
				if errors.Is(err, ErrStdinEnded) && !ended {
					// The command's stdin ends; the reader goes on
					// (it may still end the call).
					ended = true
					_ = out.Send(wire.FrameStdinEOF, nil)
					continue
				}
				if err != nil {
					if !ended {
						_ = out.Send(wire.FrameStdinEOF, nil)
					}
					return
				}
			}
		}()
	}
	payload, err := readOutput(ctx, st, "exec", stdout, stderr)
	if err != nil {
		return wire.ExecResult{}, err
	}
	var res wire.ExecResult
	if err := wire.DecodeFrame(payload, &res); err != nil {
		return wire.ExecResult{}, err
	}
	return res, ctx.Err()
}

// ErrStdinEnded, from an Exec's stdin, ends the command's standard input
// while Exec goes on reading stdin (and dropping what comes) until another
// error: a reader that also watches for the call's end keeps being read.
var ErrStdinEnded = errors.New("stdin ended")

// readOutput writes the stdout and stderr frames of an exec or run stream to
// stdout and stderr as they come (through a small buffer, whatever size the
// agent made them), and returns the JSON frame that ends the stream.
func readOutput(ctx context.Context, st net.Conn, what string, stdout, stderr io.Writer) ([]byte, error) {
	for {
		typ, n, err := wire.ReadFrameHeader(st)
		if err == nil {
			switch typ {
			case wire.FrameStdout, wire.FrameStderr:
				w := stdout
				if typ == wire.FrameStderr {
					w = stderr
				}
				var werr error
				if werr, err = wire.CopyFrame(w, st, n); werr != nil {
					return nil, werr
				}
				if err == nil {
					continue
				}
			case wire.FrameJSON:
				return wire.ReadPayload(st, typ, n)
			default:
				return nil, fmt.Errorf("agent: unexpected frame %q", typ)
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s stream: %w", what, err)
	}
}

// ErrNoSession is returned when a terminal session does not exist.
var ErrNoSession = errors.New("no such terminal session")

// PtyStream is one viewer's stream of a terminal session.
type PtyStream struct {
	st   net.Conn
	out  *wire.FrameSender
	Info wire.PtyInfo
	// left is what is still to be read of the output frame at hand; buf
	// holds one piece of it.
	left uint32
	buf  []byte
}

// ptyPiece bounds the output one Next returns.
const ptyPiece = 4 << 10

// PtyAttach opens a terminal stream (a new session when req.Open is set).
func (c *Conn) PtyAttach(ctx context.Context, req wire.PtyAttach) (*PtyStream, error) {
	st, err := c.stream(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { st.Close() })
	out := wire.NewFrameSender(st)
	if err := out.SendJSON(wire.Request{Op: "pty_attach", Pty: &req}); err != nil {
		stop()
		st.Close()
		return nil, err
	}
	var info wire.PtyInfo
	if err := wire.ReadJSON(st, &info); err != nil {
		stop()
		st.Close()
		return nil, fmt.Errorf("pty attach: %w", err)
	}
	stop()
	if info.Error != "" {
		st.Close()
		if info.Code == wire.CodeNoSession {
			return nil, fmt.Errorf("%w: %s", ErrNoSession, req.Session)
		}
		return nil, &PtyError{Msg: info.Error}
	}
	return &PtyStream{st: st, out: out, Info: info}, nil
}

// PtyError is a terminal session the agent could not open.
type PtyError struct{ Msg string }

func (e *PtyError) Error() string { return e.Msg }

// Next returns the next piece of output (at most ptyPiece bytes, good
// until the next call), or the exit when the session's process ended (then
// the stream is over). io.EOF means the stream ended without an exit: the
// viewer was dropped or detached.
func (p *PtyStream) Next() ([]byte, *wire.PtyExit, error) {
	for p.left == 0 {
		typ, n, err := wire.ReadFrameHeader(p.st)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, nil, io.EOF
			}
			return nil, nil, err
		}
		switch typ {
		case wire.FrameStdout:
			p.left = n
		case wire.FrameJSON:
			payload, err := wire.ReadPayload(p.st, typ, n)
			if err != nil {
				return nil, nil, err
			}
			var e wire.PtyExit
			if err := wire.DecodeFrame(payload, &e); err != nil {
				return nil, nil, err
			}
			return nil, &e, nil
		default:
			return nil, nil, fmt.Errorf("agent: unexpected frame %q", typ)
		}
	}
	if p.buf == nil {
		p.buf = make([]byte, ptyPiece)
	}
	n, err := io.ReadFull(p.st, p.buf[:min(p.left, ptyPiece)])
	p.left -= uint32(n)
	if err != nil {
		return nil, nil, fmt.Errorf("agent: short frame: %w", err)
	}
	return p.buf[:n], nil, nil
}

// Input sends keystrokes.
func (p *PtyStream) Input(b []byte) error {
	for len(b) > 0 {
		n := min(len(b), wire.MaxFrame)
		if err := p.out.Send(wire.FrameStdin, b[:n]); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// Control sends a resize or a signal.
func (p *PtyStream) Control(c wire.PtyControl) error { return p.out.SendJSON(c) }

// SetReadDeadline bounds the wait of Next.
func (p *PtyStream) SetReadDeadline(t time.Time) error { return p.st.SetReadDeadline(t) }

// Close detaches this viewer; the session goes on.
func (p *PtyStream) Close() error { return p.st.Close() }

// PtyList lists the sandbox's terminal sessions.
func (c *Conn) PtyList(ctx context.Context) ([]wire.PtyInfo, error) {
	var l wire.PtyList
	err := c.call(ctx, wire.Request{Op: "pty_list"}, &l)
	return l.Sessions, err
}

// PtyKill kills a terminal session's whole process tree.
func (c *Conn) PtyKill(ctx context.Context, id string) error {
	var r wire.OpResult
	if err := c.call(ctx, wire.Request{Op: "pty_kill", Session: id}, &r); err != nil {
		return err
	}
	if r.Error != "" {
		if r.Code == wire.CodeNoSession {
			return fmt.Errorf("%w: %s", ErrNoSession, id)
		}
		return errors.New(r.Error)
	}
	return nil
}

// Fs runs a file operation. in supplies the bytes of a write or tar_in (nil
// otherwise). For read and tar_out, sink is called with the header before any
// data and returns where the data goes. A failed operation is an *FsError.
func (c *Conn) Fs(ctx context.Context, req wire.FsRequest, in io.Reader, sink func(wire.FsResult) (io.Writer, error)) (wire.FsResult, error) {
	st, err := c.stream(ctx)
	if err != nil {
		return wire.FsResult{}, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { _ = st.SetDeadline(time.Now()) })
	defer stop()
	out := wire.NewFrameSender(st)
	if err := out.SendJSON(wire.Request{Op: "fs", Fs: &req}); err != nil {
		return wire.FsResult{}, err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// upErr is why the upload broke: the operation's failure is reported
	// as that (a body over its limit, a client gone), not as the agent saw
	// it (a cut-short upload).
	var upErr atomic.Pointer[error]
	if in != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, wire.DataFrame)
			for {
				n, err := io.ReadFull(in, buf)
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = io.EOF
				}
				if n > 0 && out.Send(wire.FrameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					if errors.Is(err, io.EOF) {
						_ = out.Send(wire.FrameStdinEOF, nil)
					} else {
						// The upload broke: the stream ends without its
						// end frame, which aborts the operation.
						upErr.Store(&err)
						_ = st.Close()
					}
					return
				}
			}
		}()
		// However the operation ends, stop uploading when it does.
		defer st.SetWriteDeadline(time.Now())
	}
	var w io.Writer = io.Discard
	for {
		// Data frames go on through a small buffer as they come, however
		// large the agent made them; only a result is read whole.
		typ, n, err := wire.ReadFrameHeader(st)
		if err == nil && typ == wire.FrameStdout {
			var werr error
			if werr, err = wire.CopyFrame(w, st, n); werr != nil {
				return wire.FsResult{}, werr
			}
			if err == nil {
				continue
			}
		}
		var payload []byte
		if err == nil {
			payload, err = wire.ReadPayload(st, typ, n)
		}
		if err != nil {
			if ctx.Err() != nil {
				return wire.FsResult{}, ctx.Err()
			}
			return wire.FsResult{}, fmt.Errorf("read file stream: %w", err)
		}
		switch typ {
		case wire.FrameJSON:
			var res wire.FsResult
			if err := wire.DecodeFrame(payload, &res); err != nil {
				return wire.FsResult{}, err
			}
			if err := res.Err(); err != nil {
				if up := upErr.Load(); up != nil {
					return res, *up
				}
				return res, err
			}
			if !res.Header {
				return res, nil
			}
			if sink != nil {
				if w, err = sink(res); err != nil {
					return res, err
				}
			}
		default:
			return wire.FsResult{}, fmt.Errorf("agent: unexpected frame %q", typ)
		}
	}
}

// Watch streams file events under req.Path to fn until ctx is done, fn returns
// an error, or the agent ends the stream.
func (c *Conn) Watch(ctx context.Context, req wire.WatchRequest, fn func(wire.WatchEvent) error) error {
	st, stop, err := c.open(ctx, wire.Request{Op: "watch", Watch: &req})
	if err != nil {
		return err
	}
	defer st.Close()
	defer stop()
	for {
		var e wire.WatchEvent
		if err := wire.ReadJSON(st, &e); err != nil {
			return orCanceled(ctx, err)
		}
		if e.Type == "error" {
			return &wire.FsError{Code: e.Code, Msg: e.Error}
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// orCanceled is ctx's error when ctx has ended (what ended a stream's read
// or write then), err otherwise.
func orCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
