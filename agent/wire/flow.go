package wire

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
// a download or a port's answer would pin the whole window in bothy for
// as long as it stays. So every stream carries a flow of its own on top, in
// records: data ('D', length, bytes), grants ('W', a number of bytes the
// receiver has room for again), a hint ('S') that the sender has data but
// no credit, and the end of a side's data ('F': a half-close that still
// lets that side grant, so the other can finish).
//
// Each side starts out allowed flowInitial bytes in flight and gets more as
// the other side's reader takes them. A reader that catches up with a
// sender it starves doubles its window, up to flowMax, when grow (a budget,
// on bothy's side) allows. Records are read off the stream only when
// someone wants them (a Read, or a Write looking for credit), so what the
// peer sent waits in yamux's buffer and nowhere else: a stream whose reader
// stops holds its window, and no copy of it. A peer that sends past what it
// was granted is cut.
const (
	recData    byte = 'D'
	recGrant   byte = 'W'
	recStarved byte = 'S'
	recEnd     byte = 'F'
	// flowInitial is the window each side has at a stream's start.
	flowInitial = 2 << 10
	// flowMax bounds a window's growth (below yamux's own window, so that
	// yamux never blocks a grant behind data).
	flowMax = 2 << 20
	// flowRecord bounds one data record, and so one frame of yamux's: a
	// stream's yamux buffer keeps room for about two of the largest it had.
	flowRecord = 256 << 10
	// recHeader is a record's type and length.
	recHeader = 5
	// endWait bounds how long a side that has ended waits for the peer to
	// end too before the stream is dropped.
	endWait = 30 * time.Second
)

// errFlow is a peer that sent past its credit, or a record of no known type.
var errFlow = errors.New("agent: stream flow violated")

// Who reads records off the stream now.
const (
	pullNone = iota
	pullReader
	pullWriter
)

// Flow is a stream of the agent channel with flow control: a net.Conn
// whose reads and writes honour deadlines, whose Close half-closes (the
// peer reads to its end; this side may still read what the peer sends,
// and grant for it). The stream is dropped once both sides have ended, or
// endWait after this side did.
type Flow struct {
	st net.Conn
	// grow, when set, reserves n more bytes of receive window and returns
	// the function that gives them back; nil lets the window grow to
	// flowMax freely.
	grow func(n int64) (func(), bool)

	// pull holds a token while someone reads records off st. Under it: a
	// header read in part, and what is left of the data record at hand.
	pull    chan struct{}
	hdr     [recHeader]byte
	hdrN    int
	pending int64

	mu sync.Mutex
	// buf[off:] is data a writer took off st while it looked for credit.
	buf         []byte
	off         int
	rerr        error // io.EOF once the peer ended its data
	dead        bool  // st can no longer be read: no more grants come
	window      int64 // this side's receive window
	outstanding int64 // granted to the peer and not yet received
	unacked     int64 // read, and not granted again yet
	peerStarved bool
	puller      int
	rdeadline   time.Time
	wdeadline   time.Time
	readable    chan struct{}
	writable    chan struct{}
	releases    []func()
	credit      int64
	starveSent  bool
	closed      bool
	dropTimer   *time.Timer
	bulkCopy    bool // copies of this stream use bulkCopies

	wmu sync.Mutex // one record at a time on st
}

// NewFlow starts the flow over a stream just opened or accepted.
func NewFlow(st net.Conn, grow func(int64) (func(), bool)) *Flow {
	return &Flow{
		st: st, grow: grow, pull: make(chan struct{}, 1),
		window: flowInitial, outstanding: flowInitial, credit: flowInitial,
		readable: make(chan struct{}, 1), writable: make(chan struct{}, 1),
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// acquire takes the pull, or returns false when wake fires (something to
// look at again) or deadline passes first.
func (f *Flow) acquire(deadline time.Time, wake chan struct{}) bool {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case f.pull <- struct{}{}:
		return true
	case <-wake:
		return false
	case <-timeout:
		return false
	}
}

// pull marks who pulls, and gives st's read deadline to them.
func (f *Flow) setPuller(who int) {
	f.mu.Lock()
	f.puller = who
	switch {
	case who == pullNone:
	case f.dead:
		// Killed: a read of st fails at once.
		_ = f.st.SetReadDeadline(time.Now())
	case who == pullReader:
		_ = f.st.SetReadDeadline(f.rdeadline)
	case who == pullWriter:
		_ = f.st.SetReadDeadline(f.wdeadline)
	}
	f.mu.Unlock()
}

// release gives the pull back and wakes whoever waits, to look again.
func (f *Flow) release() {
	f.setPuller(pullNone)
	<-f.pull
	notify(f.readable)
	notify(f.writable)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// fail ends the stream's reading for good with err.
func (f *Flow) fail(err error) {
	f.mu.Lock()
	if f.rerr == nil || errors.Is(f.rerr, errFlow) || err == errFlow {
		f.rerr = err
	}
	f.dead = true
	if f.dropTimer != nil {
		f.dropTimer.Stop()
	}
	f.mu.Unlock()
	notify(f.readable)
	notify(f.writable)
	if err == errFlow {
		_ = f.st.Close()
	}
}

// nextRecord reads one record's header (under the pull) and applies it:
// a grant or a hint at once, a data record by leaving its bytes pending.
func (f *Flow) nextRecord() error {
	for f.hdrN < recHeader {
		n, err := f.st.Read(f.hdr[f.hdrN:])
		f.hdrN += n
		if err != nil {
			return err
		}
	}
	f.hdrN = 0
	n := int64(binary.BigEndian.Uint32(f.hdr[1:]))
	f.mu.Lock()
	switch f.hdr[0] {
	case recGrant:
		f.credit += n
		f.starveSent = false
		notify(f.writable)
	case recStarved:
		f.peerStarved = true
	case recEnd:
		if f.rerr == nil {
			f.rerr = errEnded
		}
		if f.closed {
			// Both sides have ended: the stream can go.
			f.mu.Unlock()
			return f.st.Close()
		}
	case recData:
		if n == 0 || n > f.outstanding {
			f.mu.Unlock()
			return errFlow
		}
		f.outstanding -= n
		f.pending = n
	default:
		f.mu.Unlock()
		return errFlow
	}
	f.mu.Unlock()
	return nil
}

// errEnded is the peer's end of its data; Read reports it as io.EOF.
var errEnded = errors.New("EOF")

// serveStarved, when the peer waits for credit while this side waits for
// data, grants what was read and grows the window if the budget allows.
func (f *Flow) serveStarved() {
	f.mu.Lock()
	if !f.peerStarved {
		f.mu.Unlock()
		return
	}
	f.peerStarved = false
	// From bulkWindow on, copies of the stream are bulk ones: their buffer
	// comes out of the budget before the window grows further.
	if !f.bulkCopy && f.window >= bulkWindow && !f.closed {
		if f.grow == nil {
			f.bulkCopy = true
		} else if release, ok := f.grow(bulkCopy); ok {
			f.releases = append(f.releases, release)
			f.bulkCopy = true
		}
	}
	var extra int64
	if f.window < flowMax && !f.closed {
		extra = min(f.window, flowMax-f.window)
		if f.grow != nil {
			// What a stalled stream holds of a window is up to twice it:
			// yamux's buffer grows by doubling.
			release, ok := f.grow(2 * extra)
			if ok {
				f.releases = append(f.releases, release)
			} else {
				extra = 0
			}
		}
		f.window += extra
	}
	grant := f.unacked + extra
	f.unacked = 0
	f.outstanding += grant
	f.mu.Unlock()
	if grant > 0 {
		_ = f.send(recGrant, grant, nil)
	}
}

// consumed accounts n bytes read, and grants them back once half a window
// was read.
func (f *Flow) consumed(n int) {
	f.mu.Lock()
	f.unacked += int64(n)
	var grant int64
	if f.unacked >= f.window/2 {
		grant, f.unacked = f.unacked, 0
		f.outstanding += grant
	}
	f.mu.Unlock()
	if grant > 0 {
		_ = f.send(recGrant, grant, nil)
	}
}

func (f *Flow) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		f.mu.Lock()
		if f.off < len(f.buf) {
			n := copy(p, f.buf[f.off:])
			f.off += n
			if f.off == len(f.buf) {
				f.buf, f.off = f.buf[:0], 0
			}
			f.mu.Unlock()
			f.consumed(n)
			return n, nil
		}
		if f.rerr != nil {
			err := f.rerr
			f.mu.Unlock()
			if err == errEnded {
				err = io.EOF
			}
			return 0, err
		}
		deadline := f.rdeadline
		f.mu.Unlock()
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return 0, os.ErrDeadlineExceeded
		}
		if !f.acquire(deadline, f.readable) {
			continue
		}
		n, err := f.readData(p)
		f.release()
		if n > 0 {
			f.consumed(n)
			return n, nil
		}
		if err != nil && !isTimeout(err) {
			f.fail(err)
		}
	}
}

// readData reads records (under the pull) until data comes, and then what
// of it fits in p.
func (f *Flow) readData(p []byte) (int, error) {
	f.setPuller(pullReader)
	for f.pending == 0 {
		f.mu.Lock()
		stashed, ended := f.off < len(f.buf), f.rerr != nil
		f.mu.Unlock()
		if stashed || ended {
			return 0, nil
		}
		// Waiting for data: a peer that waits for credit gets it now.
		f.serveStarved()
		if err := f.nextRecord(); err != nil {
			return 0, err
		}
	}
	n, err := f.st.Read(p[:min(int64(len(p)), f.pending)])
	f.pending -= int64(n)
	return n, err
}

func (f *Flow) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			return written, net.ErrClosed
		}
		if f.credit > 0 {
			n := min(int64(len(p)), f.credit, flowRecord)
			f.credit -= n
			f.mu.Unlock()
			if err := f.send(recData, n, p[:n]); err != nil {
				return written, err
			}
			written += int(n)
			p = p[n:]
			continue
		}
		if f.dead {
			err := f.rerr
			if err == nil || err == errEnded || errors.Is(err, io.EOF) {
				err = net.ErrClosed
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
		if !f.acquire(deadline, f.writable) {
			continue
		}
		// No one reads records: look for the grant here, keeping any data
		// that comes first for the reader.
		err := f.pullForCredit()
		f.release()
		if err != nil && !isTimeout(err) {
			f.fail(err)
		}
	}
	return written, nil
}

// pullForCredit reads one record under the pull, for a writer; data comes
// off st into buf (within the window it was granted).
func (f *Flow) pullForCredit() error {
	f.setPuller(pullWriter)
	if f.pending == 0 {
		if err := f.nextRecord(); err != nil {
			return err
		}
	}
	if f.pending > 0 {
		f.mu.Lock()
		start := len(f.buf)
		if int64(cap(f.buf)-start) < f.pending {
			grown := make([]byte, start, int64(start)+f.pending)
			copy(grown, f.buf)
			f.buf = grown
		}
		tail := f.buf[start : start+int(f.pending)]
		f.mu.Unlock()
		n, err := readFull(f.st, tail)
		f.pending -= int64(n)
		f.mu.Lock()
		f.buf = f.buf[:start+n]
		f.mu.Unlock()
		return err
	}
	return nil
}

// readFull reads len(p) bytes unless an error comes first.
func readFull(r net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// send writes one record: its header, and data's bytes.
func (f *Flow) send(typ byte, n int64, data []byte) error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	if len(data) == 0 {
		var hdr [recHeader]byte
		hdr[0] = typ
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		_, err := f.st.Write(hdr[:])
		return err
	}
	// Header and data in one write: one frame of yamux's.
	rec := recordBuffers.Get().(*[]byte)
	b := append((*rec)[:0], typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[1:], uint32(n))
	b = append(b, data...)
	_, err := f.st.Write(b)
	*rec = b
	recordBuffers.Put(rec)
	return err
}

// recordBuffers hold data records on their way out: at most flowRecord and
// a header each, and only while one is written.
var recordBuffers = sync.Pool{New: func() any { b := make([]byte, 0, recHeader+flowRecord); return &b }}

// Close ends this side's data (the peer reads to the end of what was
// sent); reads, and grants for them, go on until the peer ends too. It
// gives back the window's growth.
func (f *Flow) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	releases := f.releases
	f.releases = nil
	peerEnded := f.rerr != nil
	f.mu.Unlock()
	notify(f.writable)
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

// Kill ends the stream at once, both ways: its session is gone.
func (f *Flow) Kill() {
	f.mu.Lock()
	if f.rerr == nil || f.rerr == errEnded {
		f.rerr = net.ErrClosed
	}
	f.dead = true
	f.mu.Unlock()
	now := time.Now()
	_ = f.st.SetDeadline(now)
	notify(f.readable)
	notify(f.writable)
}

func (f *Flow) SetDeadline(t time.Time) error {
	_ = f.SetReadDeadline(t)
	return f.SetWriteDeadline(t)
}

func (f *Flow) SetReadDeadline(t time.Time) error {
	f.mu.Lock()
	f.rdeadline = t
	if f.puller == pullReader {
		_ = f.st.SetReadDeadline(t)
	}
	f.mu.Unlock()
	notify(f.readable)
	return nil
}

// SetWriteDeadline bounds a wait for credit, and a write on the stream.
func (f *Flow) SetWriteDeadline(t time.Time) error {
	f.mu.Lock()
	f.wdeadline = t
	if f.puller == pullWriter {
		_ = f.st.SetReadDeadline(t)
	}
	f.mu.Unlock()
	notify(f.writable)
	return f.st.SetWriteDeadline(t)
}

// bulk says copies of the stream are bulk ones (its reader kept up until
// its window grew to bulkWindow, and the budget had room for the buffer).
func (f *Flow) bulk() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bulkCopy
}

// windowSize is this side's receive window now.
func (f *Flow) windowSize() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.window
}

func (f *Flow) LocalAddr() net.Addr { return f.st.LocalAddr() }

func (f *Flow) RemoteAddr() net.Addr { return f.st.RemoteAddr() }
