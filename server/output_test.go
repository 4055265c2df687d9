package server

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
)

func TestCappedBuffer(t *testing.T) {
	b := &cappedBuffer{limit: 5}
	n, err := b.Write([]byte("héllo world"))
	if n != 12 || err != nil {
		t.Fatalf("write reported %d %v", n, err)
	}
	// "héllo" is 6 bytes; the cap falls inside "l", after a whole "é".
	if got := b.String(); got != "héll" || !b.truncated {
		t.Fatalf("got %q truncated=%v", got, b.truncated)
	}
	b = &cappedBuffer{limit: 2}
	b.Write([]byte("hé"))
	if got := b.String(); got != "h" {
		t.Fatalf("split rune kept: %q", got)
	}
}

func TestCappedBufferKeepsWholeRunes(t *testing.T) {
	b := &cappedBuffer{limit: 6}
	b.Write([]byte("ééé"))
	if got := b.String(); got != "ééé" {
		t.Fatalf("whole runes trimmed: %q", got)
	}
	b = &cappedBuffer{limit: 5}
	b.Write([]byte("éééé"))
	if got := b.String(); got != "éé" {
		t.Fatalf("got %q", got)
	}
}

func TestOutputEncoding(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{[]byte("hello\nworld\t\"quoted\"\n"), api.EncodingText},
		{[]byte("\x1b[31mred\x1b[0m plain text around a colour code"), api.EncodingText},
		{make([]byte, 1000), api.EncodingBase64},      // NUL bytes: \u0000 is 6x
		{[]byte{0xff, 0xfe, 'a'}, api.EncodingBase64}, // not UTF-8
		{[]byte("é ü ñ 日本"), api.EncodingText},
		{nil, api.EncodingText},
	} {
		if got := api.OutputEncoding(tc.in); got != tc.want {
			t.Errorf("api.OutputEncoding(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWriteWithOutputs: the spliced answer decodes to the same bytes, is no
// bigger than base64 of them (plus the rest of the answer), and a text
// field is escaped exactly as encoding/json escapes it.
func TestWriteWithOutputs(t *testing.T) {
	e := echo.New()
	e.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	rnd := rand.New(rand.NewPCG(1, 2))
	cases := [][]byte{
		[]byte("plain"), make([]byte, 100_000), []byte("a\"b\\c\nd\x01e\u2028f"), {0xc3, 0x28},
	}
	for range 50 {
		p := make([]byte, rnd.IntN(300))
		for i := range p {
			p[i] = byte(rnd.IntN(128))
		}
		cases = append(cases, p)
	}
	for _, out := range cases {
		rec := httptest.NewRecorder()
		c := e.NewContext(httptest.NewRequest(http.MethodPost, "/", nil), rec)
		res := api.ExecResult{ExitCode: 3, StartError: `"stdout":"" inside a value`, StdoutEncoding: api.OutputEncoding(out)}
		if err := writeWithOutputs(c, http.StatusOK, res,
			outputField{"stdout", out, res.StdoutEncoding}, outputField{"stderr", []byte("err"), ""}); err != nil {
			t.Fatal(err)
		}
		var got api.ExecResult
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("%q: not JSON: %v: %s", out, err, rec.Body.String())
		}
		if got.ExitCode != 3 || got.Stderr != "err" || got.StartError != res.StartError {
			t.Fatalf("%q: %+v", out, got)
		}
		data := []byte(got.Stdout)
		if got.StdoutEncoding == api.EncodingBase64 {
			var err error
			if data, err = base64.StdEncoding.DecodeString(got.Stdout); err != nil {
				t.Fatal(err)
			}
		} else {
			var want bytes.Buffer
			enc := json.NewEncoder(&want) // encoding/json's own escaping
			enc.SetEscapeHTML(false)
			enc.Encode(string(out))
			quoted := bytes.TrimSpace(want.Bytes())
			if !bytes.Contains(rec.Body.Bytes(), quoted[1:len(quoted)-1]) && !bytes.Contains(out, []byte("\u2028")) {
				t.Fatalf("%q: escaped unlike encoding/json: %s", out, rec.Body.String())
			}
		}
		if !bytes.Equal(data, out) {
			t.Fatalf("round trip of %q gave %q", out, data)
		}
		if limit := len(out)*4/3 + 400; rec.Body.Len() > limit {
			t.Fatalf("%d bytes of output took %d bytes of JSON", len(out), rec.Body.Len())
		}
	}
}
