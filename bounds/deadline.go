package bounds

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"time"
)

// Writer gives every write to a client a deadline of idle from its start,
// so that a client that stops reading is cut once a write has waited that
// long, instead of holding what was meant for it. A hijacked connection
// (a WebSocket) is handed over with no deadline; its owner sets its own.
type Writer struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

// NewWriter wraps w.
func NewWriter(w http.ResponseWriter, idle time.Duration) *Writer {
	return &Writer{ResponseWriter: w, rc: http.NewResponseController(w), idle: idle}
}

// Arm sets the deadline of the next write (and of the server's own flush
// once the handler returns).
func (w *Writer) Arm() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.idle)) }

func (w *Writer) Write(p []byte) (int, error) {
	w.Arm()
	return w.ResponseWriter.Write(p)
}

// WriteHeader writes the head of the answer (buffered until the first
// write or flush).
func (w *Writer) WriteHeader(status int) {
	w.Arm()
	w.ResponseWriter.WriteHeader(status)
}

// Flush sends what is buffered, under the same deadline.
func (w *Writer) Flush() {
	w.Arm()
	_ = w.rc.Flush()
}

// FlushError is Flush that reports a failure.
func (w *Writer) FlushError() error {
	w.Arm()
	return w.rc.Flush()
}

// Hijack hands the connection over, with its deadlines cleared.
func (w *Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := w.rc.Hijack()
	if err == nil {
		_ = c.SetDeadline(time.Time{})
	}
	return c, rw, err
}

// Unwrap is the wrapped writer, for http.ResponseController and Echo.
func (w *Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Body gives every read of a request's body a deadline of idle, so a client
// that stops sending is cut. (net/http clears the deadline at the body's
// end, when it starts reading in the background to see the client leave.)
// A read that fails ends the connection after the answer: where the
// request ended on it is unknown, and a client that stalled must not be
// kept waiting for a next request.
type Body struct {
	io.ReadCloser
	w    http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

// NewBody wraps r's body, whose connection w answers.
func NewBody(w http.ResponseWriter, body io.ReadCloser, idle time.Duration) *Body {
	return &Body{ReadCloser: body, w: w, rc: http.NewResponseController(w), idle: idle}
}

func (b *Body) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(b.idle))
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		CloseAfter(b.w)
	}
	return n, err
}

// CloseAfter has the server close the connection once the answer is sent
// (and not read what is left of the request's body first), when the answer
// has not started yet.
func CloseAfter(w http.ResponseWriter) { w.Header().Set("Connection", "close") }
