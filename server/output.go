package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/labstack/echo/v5"
	"golang.org/x/sync/semaphore"
)

// Output a command or run produces is held in sandboxd's memory only on the
// way to a client that asked for one JSON answer (streamed forms hold a chunk
// at a time). Such a request reserves, before its command starts, the bytes
// its caps ask for from one server-wide budget, waiting its turn while the
// budget is spent; the caps it hands the agent are what it got, so the agent
// itself drops the rest and no number of requests, whatever caps they ask
// for, holds more than the budget. A cap larger than the whole budget is cut
// to it. The JSON answer is then written straight from the buffers, never
// copied into a string, and in the encoding that costs least (base64 for
// anything that JSON would inflate past it), so the bytes on the wire stay
// within 4/3 of the output's.

// budget is a pool of bytes shared by the buffered output of every request.
type budget struct {
	size int64
	sem  *semaphore.Weighted
}

func newBudget(n int64) *budget { return &budget{size: n, sem: semaphore.NewWeighted(n)} }

// reserve waits for room for two streams of up to perStream bytes each, and
// returns the cap each stream gets (perStream, or less when that is more
// than the whole budget) and the function that gives the bytes back.
func (b *budget) reserve(ctx context.Context, perStream int64) (int64, func(), error) {
	perStream = min(perStream, b.size/2)
	if err := b.sem.Acquire(ctx, 2*perStream); err != nil {
		return 0, nil, err
	}
	return perStream, func() { b.sem.Release(2 * perStream) }, nil
}

// cappedBuffer keeps the first limit bytes written to it.
type cappedBuffer struct {
	buf       []byte
	limit     int64
	truncated bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.limit - int64(len(b.buf))
	if int64(len(p)) > room {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.truncated = true
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
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
