package server

import (
	"net/http"
	"testing"
)

// previewDomain is the fixture's: its hosts reach exposed ports.
const previewDomain = "preview.test"

func TestPreviewHost(t *testing.T) {
	for _, tc := range []struct {
		host, id string
		port     int
		under    bool
	}{
		{"8000-sb-0123456789abcdef.preview.test", "sb-0123456789abcdef", 8000, true},
		{"8000-sb-0123456789abcdef.preview.test:7070", "sb-0123456789abcdef", 8000, true},
		{"8000-SB-0123456789ABCDEF.Preview.Test.", "sb-0123456789abcdef", 8000, true},
		{"www.preview.test", "", 0, true},
		{"a.8000-sb-0123456789abcdef.preview.test", "", 0, true},
		{"123456-sb-01.preview.test", "", 0, true},
		{"8000-sb-01.preview.test.evil", "", 0, false},
		{"8000-sb-01.xpreview.test", "", 0, false},
		{"preview.test", "", 0, false},
		{"127.0.0.1:7070", "", 0, false},
	} {
		id, port, under := previewHost(tc.host, previewDomain)
		if id != tc.id || port != tc.port || under != tc.under {
			t.Errorf("%s: %q %d %v, want %q %d %v", tc.host, id, port, under, tc.id, tc.port, tc.under)
		}
	}
	if _, _, under := previewHost("8000-sb-01.preview.test", ""); under {
		t.Error("no preview domain: a host is under it")
	}
}

func TestDropCookie(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.Header.Add("Cookie", "a=1; bothy_port_token=pt_x")
	r.Header.Add("Cookie", "b=2")
	dropCookie(r, previewTokenCookie)
	if got := r.Header.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
		t.Fatalf("cookies passed on: %q", got)
	}
	r.Header.Set("Cookie", "bothy_port_token=pt_x")
	dropCookie(r, previewTokenCookie)
	if _, ok := r.Header["Cookie"]; ok {
		t.Fatalf("cookies passed on: %q", r.Header.Values("Cookie"))
	}
}
