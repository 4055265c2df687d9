package ports

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/bounds"
)

// Limits of the connections to a sandbox's port. The server there is
// treated as hostile: what it sends before its body is bounded in size,
// count and time, and every buffer on the way is small and fixed, so that
// neither it nor a client that stops reading holds more of bothy's
// memory than a few of them.
const (
	// idleConnTimeout is how long a kept-alive connection to a sandbox's
	// port waits for its next request.
	idleConnTimeout = 60 * time.Second
	// maxIdlePerPort bounds the kept-alive connections of one port.
	maxIdlePerPort = 16
	// readBuffer sizes each connection's read buffer; writeBuffer the one
	// lent to write a request.
	readBuffer  = 2 << 10
	writeBuffer = 4 << 10
	// MaxHeadBytes bounds an answer's status line and headers together
	// (nginx's default buffer for them, proxy_buffer_size, is 4 or 8 KiB).
	MaxHeadBytes = 16 << 10
	// MaxHeaders bounds the number of an answer's header fields.
	MaxHeaders = 128
	// HeadTimeout bounds the wait for an answer's head once the request
	// is sent (nginx's proxy_read_timeout).
	HeadTimeout = 60 * time.Second
	// copyBuffer sizes the buffer an answer's body is copied through.
	copyBuffer = 4 << 10
	// bulkAfter is how much of a sized answer a client takes through the
	// small buffer, on a connection of the kernel's, before the rest is
	// copied through a bulk buffer of bulkCopy bytes out of its key's
	// budget (on a stream of the agent channel, the stream's window says
	// when: agent.BulkBuffer).
	bulkAfter = 256 << 10
	bulkCopy  = 128 << 10
)

// bulkCopies are the bulk buffers of connections of the kernel's.
var bulkCopies = sync.Pool{New: func() any { b := make([]byte, bulkCopy); return &b }}

// ErrHeadTooLarge is an answer whose head is out of bounds.
var ErrHeadTooLarge = errors.New("the answer's header is too large")

// transport carries proxied requests to one port of a sandbox over its
// agent connection. It writes a request and reads its answer in the calling
// goroutine: on this path each hand-off between threads costs more than
// the work it hands off, and net/http's Transport makes several per request
// (a dialling goroutine, and a reading and a writing one per connection). A
// new connection's request goes out with its dial (agent.Conn.OpenPort). A
// connection the server keeps alive is kept for the next request.
type transport struct {
	conn *agent.Conn
	port int
	// dial connects to the port from bothy's side of the sandbox's
	// network namespace, where the runtime can (errors.ErrUnsupported
	// where it cannot: the agent carries the connection then, as it does
	// from then on once viaAgent is set).
	dial     func(ctx context.Context) (net.Conn, error)
	viaAgent atomic.Bool

	mu   sync.Mutex
	idle []*serverConn // the most recently used last
}

// serverConn is one connection to the sandbox's server.
type serverConn struct {
	c         net.Conn
	head      *headLimit // what br may read of the server while a head is read
	br        *bufio.Reader
	idleSince time.Time
}

// headLimit lets a read buffer take at most left bytes of r while armed: an
// answer's head is parsed from at most that much, however the server
// spreads it over lines; disarmed, it passes everything.
type headLimit struct {
	r     io.Reader
	left  int64
	armed bool
}

func (h *headLimit) arm()    { h.left, h.armed = MaxHeadBytes, true }
func (h *headLimit) disarm() { h.armed = false }

func (h *headLimit) Read(p []byte) (int, error) {
	if !h.armed {
		return h.r.Read(p)
	}
	if h.left <= 0 {
		return 0, fmt.Errorf("%w: over %d bytes", ErrHeadTooLarge, MaxHeadBytes)
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}

// writers lend requests their write buffers.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBuffer) }}

func (sc *serverConn) close() { _ = sc.c.Close() }

// abort closes sc and ends at once a read or write blocked on it (a close
// alone is a half-close on the agent channel: the server may still answer).
func (sc *serverConn) abort() {
	_ = sc.c.SetDeadline(time.Now())
	_ = sc.c.Close()
}

// get takes a kept-alive connection, or opens one.
func (t *transport) get(ctx context.Context) (*serverConn, bool, error) {
	t.mu.Lock()
	for len(t.idle) > 0 {
		sc := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if time.Since(sc.idleSince) < idleConnTimeout {
			t.mu.Unlock()
			return sc, true, nil
		}
		sc.close()
	}
	t.mu.Unlock()
	c, err := t.open(ctx)
	if err != nil {
		return nil, false, err
	}
	head := &headLimit{r: c}
	return &serverConn{c: c, head: head, br: bufio.NewReaderSize(head, readBuffer)}, false, nil
}

// open makes a new connection to the port: the kernel's own, where the
// runtime can make it; a stream of the agent channel otherwise, and when
// the runtime's try fails for another reason than that nothing listens.
func (t *transport) open(ctx context.Context) (net.Conn, error) {
	if t.dial != nil && !t.viaAgent.Load() {
		c, err := t.dial(ctx)
		switch {
		case err == nil || errors.Is(err, agent.ErrNotListening) || ctx.Err() != nil:
			return c, err
		case errors.Is(err, errors.ErrUnsupported):
			t.viaAgent.Store(true)
		}
	}
	return t.conn.OpenPort(ctx, t.port)
}

// put keeps sc for the next request.
func (t *transport) put(sc *serverConn) {
	sc.idleSince = time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.idle) >= maxIdlePerPort {
		t.idle[0].close()
		t.idle = t.idle[1:]
	}
	t.idle = append(t.idle, sc)
}

// CloseIdleConnections closes the kept-alive connections.
func (t *transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, sc := range idle {
		sc.close()
	}
}

// RoundTrip sends req and reads its answer. A kept-alive connection that
// the server closed before answering is replaced by a new one when the
// request can be sent again (no body).
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		sc, reused, err := t.get(req.Context())
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(sc, req)
		if err != nil && reused && (req.Body == nil || req.Body == http.NoBody) && req.Context().Err() == nil &&
			!errors.Is(err, agent.ErrNotListening) {
			continue // at most once per kept connection: each is dropped
		}
		return resp, err
	}
}

// exchange writes req on sc and reads the answer's head; the answer's body
// hands sc back, or closes it, when it has been read.
func (t *transport) exchange(sc *serverConn, req *http.Request) (*http.Response, error) {
	// A cancelled request ends its connection, and so any read or write on it.
	stop := context.AfterFunc(req.Context(), sc.abort)
	write := func() error {
		// A write buffer is lent for the request's writing only.
		bw := writers.Get().(*bufio.Writer)
		bw.Reset(sc.c)
		err := req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		bw.Reset(nil)
		writers.Put(bw)
		if err != nil {
			sc.abort()
		}
		return err
	}
	written := make(chan error, 1)
	if req.Body == nil || req.Body == http.NoBody {
		if err := write(); err != nil {
			stop()
			return nil, err
		}
		written <- nil
	} else {
		// A body is sent while the answer may already come (a server
		// that answers before it has read everything).
		go func() { written <- write() }()
	}
	_ = sc.c.SetReadDeadline(time.Now().Add(HeadTimeout))
	resp, err := readAnswer(sc, req)
	_ = sc.c.SetReadDeadline(time.Time{})
	if err != nil {
		stop()
		sc.abort()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection is the upgraded protocol's now.
		stop()
		resp.Body = upgraded{Reader: sc.br, conn: sc.c}
		return resp, nil
	}
	resp.Body = &answerBody{body: resp.Body, t: t, sc: sc, stop: stop, written: written, keep: !resp.Close && !req.Close,
		scope: bounds.From(req.Context())}
	return resp, nil
}

// readAnswer reads the answer to req, skipping informational ones (1xx)
// other than a protocol switch. Each head is read from at most
// MaxHeadBytes of the server's bytes and holds at most MaxHeaders fields.
func readAnswer(sc *serverConn, req *http.Request) (*http.Response, error) {
	for {
		sc.head.arm()
		resp, err := http.ReadResponse(sc.br, req)
		spent := sc.head.left <= 0
		sc.head.disarm()
		if err != nil {
			if spent {
				// However the parser put it, the head did not end in time.
				return nil, fmt.Errorf("%w: over %d bytes", ErrHeadTooLarge, MaxHeadBytes)
			}
			return nil, err
		}
		if len(resp.Header) > MaxHeaders {
			resp.Body.Close()
			return nil, fmt.Errorf("%w: more than %d fields", ErrHeadTooLarge, MaxHeaders)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols || resp.StatusCode < 100 {
			return resp, nil
		}
	}
}

// upgraded is an upgraded connection, as ReverseProxy wants an answer's
// body to be for a protocol switch.
type upgraded struct {
	io.Reader
	conn net.Conn
}

func (u upgraded) Write(p []byte) (int, error) { return u.conn.Write(p) }
func (u upgraded) Close() error                { return u.conn.Close() }

// answerBody is an answer's body: read to its end on a connection the
// server keeps alive, with the request written whole, it hands the
// connection back for the next request; otherwise it closes it.
type answerBody struct {
	body    io.ReadCloser
	t       *transport
	sc      *serverConn
	stop    func() bool
	written chan error
	keep    bool
	done    bool
	// direct, when set, is the client an answer of known length goes to
	// unflushed: once the stream has proved a bulk one, Read copies the
	// rest there itself, through a bulk buffer rather than the proxy's
	// small one (a write to the client per 4 KiB cost the port proxy's
	// downloads half their speed).
	direct io.Writer
	// read is what the client has taken so far; scope is the request's,
	// out of whose key's budget a bulk buffer comes.
	read   int64
	scope  *bounds.Scope
	noBulk bool // the key's budget had no room for a bulk buffer
}

// bulkBuffer lends a bulk buffer for the rest of the answer, once the
// connection has proved a bulk one; ok is false before.
func (b *answerBody) bulkBuffer() (buf []byte, put func(), ok bool) {
	if buf, put, ok := agent.BulkBuffer(b.sc.c); ok {
		return buf, put, true
	}
	if _, kernel := b.sc.c.(*net.TCPConn); !kernel || b.read < bulkAfter || b.scope == nil || b.noBulk {
		return nil, nil, false
	}
	release, ok := b.scope.GrowWindow(bulkCopy)
	if !ok {
		b.noBulk = true
		return nil, nil, false
	}
	p := bulkCopies.Get().(*[]byte)
	return *p, func() { bulkCopies.Put(p); release() }, true
}

func (b *answerBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	if b.direct != nil {
		if buf, put, ok := b.bulkBuffer(); ok {
			defer put()
			return 0, b.copyDirect(buf)
		}
	}
	n, err := b.body.Read(p)
	b.read += int64(n)
	if err == io.EOF {
		b.finish(true)
	} else if err != nil {
		b.finish(false)
	}
	return n, err
}

// copyDirect copies the rest of the answer to b.direct through buf, and
// ends as Read does at the end of the body: io.EOF once it is all written.
func (b *answerBody) copyDirect(buf []byte) error {
	for {
		n, err := b.body.Read(buf)
		if n > 0 {
			if _, werr := b.direct.Write(buf[:n]); werr != nil {
				b.finish(false)
				return werr
			}
		}
		if err != nil {
			b.finish(err == io.EOF)
			return err
		}
	}
}

func (b *answerBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish hands the connection back when the whole answer was read and the
// whole request written, or ends it.
func (b *answerBody) finish(whole bool) {
	b.done = true
	if !b.stop() {
		whole = false // the request was cancelled: the connection is closed
	}
	if whole && b.keep {
		select {
		case err := <-b.written:
			if err == nil {
				b.t.put(b.sc)
				return
			}
		default: // the request is still being written
		}
	}
	b.sc.abort()
}

// copyBuffers lends the proxy its buffers for copying answers: small ones,
// since one is pinned for as long as a client takes to read what it holds.
type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }
