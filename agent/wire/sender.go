package wire

import (
	"encoding/binary"
	"io"
	"sync"
)

// FrameSender serialises frame writes from several goroutines onto one stream.
type FrameSender struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte // reused for every frame
}

// NewFrameSender sends frames on w.
func NewFrameSender(w io.Writer) *FrameSender { return &FrameSender{w: w} }

// Send sends one frame.
func (f *FrameSender) Send(typ byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var err error
	f.buf, err = AppendFrame(f.w, f.buf, typ, p)
	return err
}

// Send2 sends one frame whose payload is head and then body.
func (f *FrameSender) Send2(typ byte, head, body []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(head)+len(body) > MaxFrame {
		return ErrFrameTooLarge
	}
	b := append(f.buf[:0], typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[1:5], uint32(len(head)+len(body)))
	b = append(append(b, head...), body...)
	f.buf = b
	_, err := f.w.Write(b)
	return err
}

// SendJSON sends v as a JSON frame.
func (f *FrameSender) SendJSON(v any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return WriteJSON(f.w, v)
}

// DataFrame is the largest data frame file transfers send: small enough that
// the channel's per-stream buffers stay small, large enough to be cheap.
const DataFrame = 256 << 10
