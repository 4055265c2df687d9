package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Frame types. A frame is one type byte, a big-endian uint32 length and that many
// bytes of payload.
const (
	FrameJSON     byte = 'J' // a request, a result or a handshake message
	FrameStdout   byte = 'O'
	FrameStderr   byte = 'E'
	FrameStdin    byte = 'I'
	FrameStdinEOF byte = 'C' // no more stdin; empty payload
	// FrameLog is a record of a process's output: a big-endian int64
	// offset, the stream ('O' or 'E'), then the bytes. Other log records
	// (gaps, the end) are JSON frames.
	FrameLog byte = 'L'
	// LogHead is the size of a log frame's offset and stream.
	LogHead = 9
)

// MaxFrame bounds the payload of one frame in either direction.
const MaxFrame = 8 << 20

var ErrFrameTooLarge = errors.New("agent: frame too large")

// WriteFrame writes one frame. It is not safe for concurrent use on one writer.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	_, err := AppendFrame(w, nil, typ, payload)
	return err
}

// AppendFrame writes one frame, assembled in buf (grown as needed), and
// returns buf for reuse.
func AppendFrame(w io.Writer, buf []byte, typ byte, payload []byte) ([]byte, error) {
	if len(payload) > MaxFrame {
		return buf, ErrFrameTooLarge
	}
	buf = append(buf[:0], typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	buf = append(buf, payload...)
	_, err := w.Write(buf)
	return buf, err
}

// WriteJSON encodes v and writes it as one JSON frame.
func WriteJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("agent: encode frame: %w", err)
	}
	return WriteFrame(w, FrameJSON, b)
}

// ReadFrame reads one frame, refusing payloads over MaxFrame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	return ReadFrameInto(r, nil)
}

// ReadFrameInto is ReadFrame reusing buf for the payload when it is large
// enough: the payload is only good until the next call with the same buf.
func ReadFrameInto(r io.Reader, buf []byte) (byte, []byte, error) {
	typ, n, err := ReadFrameHeader(r)
	if err != nil {
		return 0, nil, err
	}
	var payload []byte
	if uint32(cap(buf)) >= n {
		payload = buf[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return 0, nil, fmt.Errorf("agent: short frame: %w", err)
		}
		return typ, payload, nil
	}
	payload, err = ReadPayload(r, typ, n)
	return typ, payload, err
}

// ReadFrameHeader reads a frame's type and length, refusing lengths over
// MaxFrame.
func ReadFrameHeader(r io.Reader) (byte, uint32, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, 0, ErrFrameTooLarge
	}
	return hdr[0], n, nil
}

// ReadPayload reads a frame's n bytes. Memory grows with what has come,
// not with what the header claims: a peer that announces a large frame
// has to send it.
func ReadPayload(r io.Reader, typ byte, n uint32) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(int(min(n, 64<<10)))
	if _, err := io.CopyN(&b, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("agent: short frame %q: %w", typ, err)
	}
	return b.Bytes(), nil
}

// Frame copies go through a small buffer, held for as long as the writer
// (a client) takes to take what it holds; a stream whose reader has kept
// up long enough to have its window grown out of its budget copies through
// a larger one.
var (
	smallCopies = sync.Pool{New: func() any { b := make([]byte, 1<<10); return &b }}
	bulkCopies  = sync.Pool{New: func() any { b := make([]byte, bulkCopy); return &b }}
)

// bulkWindow is the window from which a stream's copies are bulk ones, of
// bulkCopy bytes.
const (
	bulkWindow = 64 << 10
	bulkCopy   = 128 << 10
)

// BulkBuffer lends a bulk copy buffer for the bytes c brings, once c (a
// stream with flow control) has become a bulk one; ok is false before, and
// for any other connection.
func BulkBuffer(c net.Conn) (buf []byte, put func(), ok bool) {
	if f, isFlow := c.(*Flow); !isFlow || !f.bulk() {
		return nil, nil, false
	}
	b := bulkCopies.Get().(*[]byte)
	return *b, func() { bulkCopies.Put(b) }, true
}

// CopyFrame copies a frame's n bytes from r to w, and reports a failure of
// w apart from one of r.
func CopyFrame(w io.Writer, r io.Reader, n uint32) (writeErr, readErr error) {
	pool := &smallCopies
	if f, ok := r.(*Flow); ok && f.bulk() {
		pool = &bulkCopies
	}
	buf := pool.Get().(*[]byte)
	defer pool.Put(buf)
	left := int64(n)
	for left > 0 {
		k, err := io.ReadFull(r, (*buf)[:min(left, int64(len(*buf)))])
		if k > 0 {
			if _, werr := w.Write((*buf)[:k]); werr != nil {
				return werr, nil
			}
			left -= int64(k)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("agent: short frame: %w", err)
		}
	}
	return nil, nil
}

// ReadJSON reads one frame that must be JSON and decodes it into v.
func ReadJSON(r io.Reader, v any) error {
	typ, payload, err := ReadFrame(r)
	if err != nil {
		return err
	}
	if typ != FrameJSON {
		return fmt.Errorf("agent: want a JSON frame, got %q", typ)
	}
	return DecodeFrame(payload, v)
}

func DecodeFrame(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("agent: decode frame: %w", err)
	}
	return nil
}
