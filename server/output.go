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

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/bounds"
)

// Output a command or run produces is held in bothy's memory only on the
// way to a client that asked for one JSON answer (streamed forms hold a chunk
// at a time). Such a request reserves, before its command starts, the bytes
// its caps ask for from the output budget that every front door shares
// (bounds.Scope.ReserveStreams), waiting its turn while it is spent; the
// caps it hands the agent are what it got, so the agent itself drops the
// rest and no number of requests, whatever caps they ask for, holds more
// than the budget. The JSON answer is then written straight from the
// buffers, never copied into a string, and in the encoding that costs least
// (base64 for anything that JSON would inflate past it), so the bytes on the
// wire stay within 4/3 of the output's.

// reserveOutput reserves room for a stdout and a stderr of up to perStream
// bytes each for the request of ctx, and returns the cap each gets.
func reserveOutput(ctx context.Context, perStream int64) (int64, error) {
	sc, err := bounds.MustFrom(ctx)
	if err != nil {
		return 0, err
	}
	return sc.ReserveStreams(ctx, 2, perStream)
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

// writeJSONString writes p as the body of a JSON string (without quotes),
// escaped as encoding/json would; p is valid UTF-8.
func writeJSONString(w *bufio.Writer, p []byte) {
	var buf [512]byte
	for len(p) > 0 {
		n := min(len(p), 64)
		w.Write(appendJSONString(buf[:0], p[:n]))
		p = p[n:]
	}
}

// appendJSONString appends p as the body of a JSON string (without quotes),
// escaped as encoding/json would; p is valid UTF-8.
func appendJSONString(b, p []byte) []byte {
	const hex = "0123456789abcdef"
	for _, c := range p {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
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
		if o.enc == api.EncodingBase64 {
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
