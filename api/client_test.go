package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// The client against canned answers of the server's wire format: errors
// become *Error with their status and Retry-After, output sent in base64
// comes back as bytes, streamed events are decoded.
func TestClientDecodesTheWireFormat(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":{"code":"unauthenticated","message":"no key"}}`))
			return
		}
		switch r.URL.Path {
		case "/v1/sandboxes/sb-gone":
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error":{"code":"not_found","message":"sandbox sb-gone not found","request_id":"r1"}}`))
		case "/v1/run":
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte(`{"error":{"code":"rate_limited","message":"slow down"}}`))
		case "/v1/sandboxes/sb-1/exec":
			if r.Header.Get("Accept") == "application/x-ndjson" {
				w.Write([]byte(`{"type":"stdout","data":"aGk=","encoding":"base64"}` + "\n" +
					`{"type":"stderr","data":"oops"}` + "\n" + `{"type":"exit","result":{"exit_code":2}}` + "\n"))
				return
			}
			w.Write([]byte(`{"exit_code":0,"stdout":"AP8=","stdout_encoding":"base64","stderr":"plain"}`))
		case "/v1/teapot":
			w.WriteHeader(http.StatusTeapot)
			w.Write([]byte("not json"))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := NewClient(srv.URL, "k")

	_, err := c.GetSandbox(ctx, "sb-gone")
	var e *Error
	if !IsNotFound(err) || !errors.As(err, &e) || e.Code != CodeNotFound || e.RequestID != "r1" {
		t.Fatalf("not found: %#v", err)
	}
	_, err = c.Run(ctx, RunRequest{Runtime: "python", Code: "1"})
	if !errors.As(err, &e) || e.Status != 429 || e.RetryAfter != 7 || e.Code != CodeRateLimited {
		t.Fatalf("rate limited: %#v", err)
	}
	res, err := c.Exec(ctx, "sb-1", ExecRequest{Cmd: []string{"x"}})
	if err != nil || res.Stdout != "\x00\xff" || res.StdoutEncoding != "" || res.Stderr != "plain" {
		t.Fatalf("exec: %+v, %v", res, err)
	}
	var out, errb bytes.Buffer
	res, err = c.ExecStream(ctx, "sb-1", ExecRequest{Cmd: []string{"x"}}, &out, &errb)
	if err != nil || res.ExitCode != 2 || out.String() != "hi" || errb.String() != "oops" {
		t.Fatalf("exec stream: %+v %q %q, %v", res, out.String(), errb.String(), err)
	}
	if err := c.do(ctx, http.MethodGet, "/v1/teapot", nil, nil, nil); !errors.As(err, &e) || e.Status != http.StatusTeapot || e.Code != CodeInternal {
		t.Fatalf("a non-JSON error: %#v", err)
	}
	if _, err := NewClient(srv.URL, "wrong").GetSandbox(ctx, "sb-1"); !errors.As(err, &e) || e.Code != CodeUnauthenticated {
		t.Fatalf("a wrong key: %#v", err)
	}
}
