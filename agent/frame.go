package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Frame types. A frame is one type byte, a big-endian uint32 length and that many
// bytes of payload.
const (
	frameJSON     byte = 'J' // a request, a result or a handshake message
	frameStdout   byte = 'O'
	frameStderr   byte = 'E'
	frameStdin    byte = 'I'
	frameStdinEOF byte = 'C' // no more stdin; empty payload
)

// MaxFrame bounds the payload of one frame in either direction.
const MaxFrame = 8 << 20

var errFrameTooLarge = errors.New("agent: frame too large")

// writeFrame writes one frame. It is not safe for concurrent use on one writer.
func writeFrame(w io.Writer, typ byte, payload []byte) error {
	_, err := appendFrame(w, nil, typ, payload)
	return err
}

// appendFrame writes one frame, assembled in buf (grown as needed), and
// returns buf for reuse.
func appendFrame(w io.Writer, buf []byte, typ byte, payload []byte) ([]byte, error) {
	if len(payload) > MaxFrame {
		return buf, errFrameTooLarge
	}
	buf = append(buf[:0], typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(buf[1:5], uint32(len(payload)))
	buf = append(buf, payload...)
	_, err := w.Write(buf)
	return buf, err
}

// writeJSON encodes v and writes it as one JSON frame.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("agent: encode frame: %w", err)
	}
	return writeFrame(w, frameJSON, b)
}

// readFrame reads one frame, refusing payloads over MaxFrame.
func readFrame(r io.Reader) (byte, []byte, error) {
	return readFrameInto(r, nil)
}

// readFrameInto is readFrame reusing buf for the payload when it is large
// enough: the payload is only good until the next call with the same buf.
func readFrameInto(r io.Reader, buf []byte) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, errFrameTooLarge
	}
	var payload []byte
	if uint32(cap(buf)) >= n {
		payload = buf[:n]
	} else {
		payload = make([]byte, n)
	}
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("agent: short frame: %w", err)
	}
	return hdr[0], payload, nil
}

// readJSON reads one frame that must be JSON and decodes it into v.
func readJSON(r io.Reader, v any) error {
	typ, payload, err := readFrame(r)
	if err != nil {
		return err
	}
	if typ != frameJSON {
		return fmt.Errorf("agent: want a JSON frame, got %q", typ)
	}
	return decodeFrame(payload, v)
}

func decodeFrame(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return fmt.Errorf("agent: decode frame: %w", err)
	}
	return nil
}
