package server

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"unicode/utf8"

	"github.com/labstack/echo/v5"
)

// Output a command or run produces is held in sandboxd's memory only on the
// way to a client that asked for one JSON answer (streamed forms hold a chunk
// at a time). Every such buffer draws on one server-wide budget, so that no
// number of requests, whatever caps they ask for, can hold more than the
// budget: output past it is cut and flagged as truncated. The JSON answer is
// then written straight from the buffers, never copied into a string, and in
// the encoding that costs least (base64 for anything that JSON would inflate
// past it), so the bytes on the wire stay within 4/3 of the output's.

// budget is a pool of bytes shared by the buffers of every request.
type budget struct{ left atomic.Int64 }

func newBudget(n int64) *budget {
	b := &budget{}
	b.left.Store(n)
	return b
}

// take takes up to n bytes and returns how many it got.
func (b *budget) take(n int64) int64 {
	for {
		left := b.left.Load()
		got := min(n, left)
		if got <= 0 {
			return 0
		}
		if b.left.CompareAndSwap(left, left-got) {
			return got
		}
	}
}

func (b *budget) give(n int64) { b.left.Add(n) }

// budgetChunk is how much a buffer takes from the budget at a time.
const budgetChunk = 64 << 10

// cappedBuffer keeps the first limit bytes written to it, as far as the
// budget allows. Release gives its bytes back.
type cappedBuffer struct {
	buf       []byte
	limit     int64
	truncated bool
	budget    *budget
	held      int64
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.limit - int64(len(b.buf))
	if b.budget != nil && int64(len(p)) > b.held-int64(len(b.buf)) {
		want := min(room, int64(len(b.buf))+int64(len(p))-b.held)
		want = (want + budgetChunk - 1) / budgetChunk * budgetChunk
		b.held += b.budget.take(want)
		room = min(room, b.held-int64(len(b.buf)))
	}
	if int64(len(p)) > room {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.truncated = true
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Release returns the buffer's bytes to the budget; the buffer is empty after.
func (b *cappedBuffer) Release() {
	if b.budget != nil {
		b.budget.give(b.held)
	}
	b.buf, b.held = nil, 0
}

// Bytes returns the output, cut back to a whole UTF-8 character if the cap
// split one.
func (b *cappedBuffer) Bytes() []byte {
	s := b.buf
	for i := 0; b.truncated && i < utf8.UTFMax-1 && len(s) > 0; i++ {
		if r, size := utf8.DecodeLastRune(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// String is Bytes as a string.
func (b *cappedBuffer) String() string { return string(b.Bytes()) }

// Encodings of output in JSON.
const (
	encText   = ""
	encBase64 = "base64"
)

// outputEncoding is the cheaper of a JSON string and base64 for p; base64
// whenever p is not valid UTF-8, which a JSON string cannot carry.
func outputEncoding(p []byte) string {
	if !utf8.Valid(p) {
		return encBase64
	}
	escaped := 0
	for _, c := range p {
		switch {
		case c == '\n' || c == '\r' || c == '\t' || c == '"' || c == '\\':
			escaped++
		case c < 0x20:
			escaped += 5 // \u00XX
		}
	}
	if int64(len(p)+escaped) > int64(len(p))*4/3+4 {
		return encBase64
	}
	return encText
}

// writeJSONString writes p as the body of a JSON string (without quotes),
// escaped as encoding/json would; p is valid UTF-8.
func writeJSONString(w *bufio.Writer, p []byte) {
	const hex = "0123456789abcdef"
	for _, c := range p {
		switch {
		case c == '"' || c == '\\':
			w.WriteByte('\\')
			w.WriteByte(c)
		case c == '\n':
			w.WriteString(`\n`)
		case c == '\r':
			w.WriteString(`\r`)
		case c == '\t':
			w.WriteString(`\t`)
		case c < 0x20:
			w.WriteString(`\u00`)
			w.WriteByte(hex[c>>4])
			w.WriteByte(hex[c&0xf])
		default:
			w.WriteByte(c)
		}
	}
}

// outputField is one output to splice into a JSON answer: the string field
// named field, written in the encoding chosen for it.
type outputField struct {
	field string
	data  []byte
	enc   string
}

// writeWithOutputs answers status with v as JSON, where each of outs replaces
// the field of its name, which v must render as an empty string. The fields
// are written from their buffers, never copied.
func writeWithOutputs(c *echo.Context, status int, v any, outs ...outputField) error {
	meta, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w := c.Response()
	w.Header().Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	w.WriteHeader(status)
	bw := bufio.NewWriterSize(w, 64<<10)
	rest := meta
	for _, o := range outs {
		// An empty string field renders as exactly this, and no value can
		// hold it unescaped.
		marker := []byte(fmt.Sprintf("%q:\"\"", o.field))
		i := bytes.Index(rest, marker)
		if i < 0 {
			return fmt.Errorf("answer has no empty field %q", o.field)
		}
		bw.Write(rest[:i+len(marker)-1])
		if o.enc == encBase64 {
			enc := base64.NewEncoder(base64.StdEncoding, bw)
			enc.Write(o.data)
			enc.Close()
		} else {
			writeJSONString(bw, o.data)
		}
		rest = rest[i+len(marker)-1:]
	}
	bw.Write(rest)
	bw.WriteByte('\n')
	return bw.Flush()
}
