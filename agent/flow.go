package agent

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// Flow control of the agent channel's streams.
//
// yamux gives every stream one receive window, the same for all (4 MiB here,
// so that a bulk transfer runs at memory speed), and the sender fills it
// whether or not anyone reads: a client that stops reading a followed log,
// a download or a port's answer would pin the whole window in sandboxd for
// as long as it stays. So every stream carries a flow of its own on top, in
// records: data ('D', length, bytes), grants ('W', a number of bytes the
// receiver has room for again), a hint ('S') that the sender has data but
// no credit, and the end of a side's data ('F': a half-close that still
// lets that side grant, so the other can finish). Each side starts out allowed flowInitial bytes in flight,
// and gets more as the other side's reader takes them. A reader that keeps
// up with a sender it starves doubles its window, up to flowMax, when grow
// (a budget, on sandboxd's side) allows; a reader that stops taking data
// stops granting, so what a stalled stream holds is its window and no more.
// A peer that sends past what it was granted is cut.
const (
	recData    byte = 'D'
	recGrant   byte = 'W'
	recStarved byte = 'S'
	recEnd     byte = 'F'
	// flowInitial is the window each side has at a stream's start.
	flowInitial = 16 << 10
	// flowMax bounds a window's growth (below yamux's own window, so that
	// yamux never blocks a grant behind data).
	flowMax = 2 << 20
	// flowRecord bounds one data record.
	flowRecord = 64 << 10
	// recHeader is a record's type and length.
	recHeader = 5
	// endWait bounds how long a side that has ended waits for the peer to
	// end too before the stream is dropped.
	endWait = 30 * time.Second
)

// errFlow is a peer that sent past its credit, or a record of no known type.
var errFlow = errors.New("agent: stream flow violated")

// flowConn is a stream of the agent channel with flow control: a net.Conn
// whose reads and writes honour deadlines, whose Close half-closes (the
// peer reads to its end; this side may still read what the peer sends,
// and grant for it). The stream is dropped once both sides have ended, or
// endWait after this side did.
type flowConn struct {
	st net.Conn
	// grow, when set, reserves n more bytes of receive window and returns
	// the function that gives them back; nil means the window may grow to
	// flowMax freely.
	grow func(n int64) (func(), bool)

	mu sync.Mutex
	// Receiving: buf[off:] is what came and was not read yet.
	buf         []byte
	off         int
	rerr        error // io.EOF once the peer ended its data
	dead        bool  // the stream itself ended: no more grants come
	window      int64 // this side's receive window
	outstanding int64 // granted to the peer and not yet received
	unacked     int64 // read, and not granted again yet
	peerStarved bool
	rdeadline   time.Time
	readable    chan struct{}
	releases    []func()
	// Sending.
	credit     int64
	starveSent bool
	wdeadline  time.Time
	writable   chan struct{}
	closed     bool
	dropTimer  *time.Timer

	wmu     sync.Mutex // one record at a time on st
	scratch []byte     // a record being written, under wmu
}

// newFlow starts the flow over a stream just opened or accepted.
func newFlow(st net.Conn, grow func(int64) (func(), bool)) *flowConn {
	f := &flowConn{
		st: st, grow: grow,
		window: flowInitial, outstanding: flowInitial, credit: flowInitial,
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1),
	}
	go f.readLoop()
	return f
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// readLoop takes the peer's records as they come: grants and hints are
// applied, data waits in buf for Read (never more than was granted).
func (f *flowConn) readLoop() {
	var hdr [recHeader]byte
	fail := func(err error) {
		f.mu.Lock()
		if f.rerr == nil {
			f.rerr = err
		}
		f.dead = true
		if f.dropTimer != nil {
			f.dropTimer.Stop()
		}
		notify(f.readable)
		notify(f.writable)
		f.mu.Unlock()
	}
	for {
		if _, err := io.ReadFull(f.st, hdr[:]); err != nil {
			fail(err)
			return
		}
		n := int64(binary.BigEndian.Uint32(hdr[1:]))
		switch hdr[0] {
		case recGrant:
			f.mu.Lock()
			f.credit += n
			f.starveSent = false
			notify(f.writable)
			f.mu.Unlock()
		case recStarved:
			f.mu.Lock()
			f.peerStarved = true
			notify(f.readable)
			f.mu.Unlock()
		case recEnd:
			f.mu.Lock()
			if f.rerr == nil {
				f.rerr = io.EOF
			}
			ended := f.closed
			notify(f.readable)
			f.mu.Unlock()
			if ended {
				_ = f.st.Close()
			}
		case recData:
			f.mu.Lock()
			if n == 0 || n > f.outstanding {
				f.mu.Unlock()
				fail(errFlow)
				_ = f.st.Close()
				return
			}
			f.outstanding -= n
			// Only this goroutine moves data in buf: make room at its end.
			if f.off == len(f.buf) {
				f.buf, f.off = f.buf[:0], 0
			}
			if int64(cap(f.buf)-len(f.buf)) < n {
				grown := make([]byte, len(f.buf)-f.off, max(int64(len(f.buf)-f.off)+n, min(f.window, 2*int64(cap(f.buf)))))
				copy(grown, f.buf[f.off:])
				f.buf, f.off = grown, 0
			}
			start := len(f.buf)
			tail := f.buf[start : start+int(n)]
			f.mu.Unlock()
			if _, err := io.ReadFull(f.st, tail); err != nil {
				fail(io.ErrUnexpectedEOF)
				return
			}
			f.mu.Lock()
			f.buf = f.buf[:start+int(n)]
			notify(f.readable)
			f.mu.Unlock()
		default:
			fail(errFlow)
			_ = f.st.Close()
			return
		}
	}
}

// wait waits for ch until deadline (zero: none); false when it passed.
func wait(ch chan struct{}, deadline time.Time) bool {
	if deadline.IsZero() {
		<-ch
		return true
	}
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

func (f *flowConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f.mu.Lock()
	for f.off == len(f.buf) {
		if f.rerr != nil {
			err := f.rerr
			f.mu.Unlock()
			return 0, err
		}
		// Caught up with a sender that waits for credit: give it all
		// that was read, and a larger window when the budget allows.
		if f.peerStarved {
			f.peerStarved = false
			var extra int64
			if f.window < flowMax && !f.closed {
				extra = min(f.window, flowMax-f.window)
				if f.grow != nil {
					release, ok := f.grow(extra)
					if ok {
						f.releases = append(f.releases, release)
					} else {
						extra = 0
					}
				}
				f.window += extra
			}
			if n := f.unacked + extra; n > 0 {
				f.unacked = 0
				f.outstanding += n
				f.mu.Unlock()
				f.send(recGrant, n, nil)
				f.mu.Lock()
				continue
			}
		}
		deadline := f.rdeadline
		f.mu.Unlock()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		wait(f.readable, deadline)
		f.mu.Lock()
	}
	n := copy(p, f.buf[f.off:])
	f.off += n
	f.unacked += int64(n)
	var grant int64
	if f.unacked >= f.window/2 {
		grant, f.unacked = f.unacked, 0
		f.outstanding += grant
	}
	if f.off < len(f.buf) {
		notify(f.readable) // more for the next Read
	}
	f.mu.Unlock()
	if grant > 0 {
		f.send(recGrant, grant, nil)
	}
	return n, nil
}

func (f *flowConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return written, net.ErrClosed
		}
		for f.credit == 0 {
			if f.closed {
				f.mu.Unlock()
				return written, net.ErrClosed
			}
			if f.dead {
				err := f.rerr
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrClosedPipe
				}
				f.mu.Unlock()
				return written, err
			}
			hint := !f.starveSent
			f.starveSent = true
			deadline := f.wdeadline
			f.mu.Unlock()
			if hint {
				if err := f.send(recStarved, 0, nil); err != nil {
					return written, err
				}
			}
			if !deadline.IsZero() && !time.Now().Before(deadline) {
				return written, os.ErrDeadlineExceeded
			}
			wait(f.writable, deadline)
			f.mu.Lock()
		}
		n := min(int64(len(p)), f.credit, flowRecord)
		f.credit -= n
		f.mu.Unlock()
		if err := f.send(recData, n, p[:n]); err != nil {
			return written, err
		}
		written += int(n)
		p = p[n:]
	}
	return written, nil
}

// send writes one record: its header, and data's bytes.
func (f *flowConn) send(typ byte, n int64, data []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	rec := recordBuffers.Get().(*[]byte)
	b := append((*rec)[:0], typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	b = append(b, data...)
	_, err := f.st.Write(b)
	*rec = b
	recordBuffers.Put(rec)
	return err
}

// recordBuffers hold records on their way out: at most flowRecord and a
// header each, and only while one is written.
var recordBuffers = sync.Pool{New: func() any { b := make([]byte, 0, recHeader+flowRecord); return &b }}

// Close ends this side's data (the peer reads to the end of what was
// sent); reads, and grants for them, go on until the peer ends too. It
// gives back the window's growth.
func (f *flowConn) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	releases := f.releases
	f.releases = nil
	peerEnded := f.rerr != nil
	notify(f.writable)
	f.mu.Unlock()
	for _, r := range releases {
		r()
	}
	if err := f.send(recEnd, 0, nil); err != nil || peerEnded {
		return f.st.Close()
	}
	f.mu.Lock()
	if !f.dead {
		f.dropTimer = time.AfterFunc(endWait, func() { _ = f.st.Close() })
	}
	f.mu.Unlock()
	return nil
}

func (f *flowConn) SetDeadline(t time.Time) error {
	_ = f.SetReadDeadline(t)
	return f.SetWriteDeadline(t)
}

func (f *flowConn) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.rdeadline = t
	notify(f.readable)
	f.mu.Unlock()
	return nil
}

// SetWriteDeadline bounds a wait for credit, and a write on the stream.
func (f *flowConn) SetWriteDeadline(t time.Time) error {
	f.mu.Lock()
	f.wdeadline = t
	notify(f.writable)
	f.mu.Unlock()
	return f.st.SetWriteDeadline(t)
}

func (f *flowConn) LocalAddr() net.Addr  { return f.st.LocalAddr() }
func (f *flowConn) RemoteAddr() net.Addr { return f.st.RemoteAddr() }
