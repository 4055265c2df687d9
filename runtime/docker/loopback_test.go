package docker_test

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bothy/bothy/images"
	"github.com/bothy/bothy/runtime"
)

// A dial of a container's loopback reaches its server on 127.0.0.1, from
// the container's side, with no network at all; a port nothing listens on
// is refused; a stopped container is not reached, and one started again
// is found in its new namespace.
func TestDialLoopback(t *testing.T) {
	d, data := withBusybox(t)
	ctx := context.Background()
	labels := map[string]string{runtime.LabelInstance: "loop-" + filepath.Base(data)}
	start := func(network string, script string) string {
		t.Helper()
		id, err := d.Create(ctx, runtime.Spec{Image: images.Busybox, Entrypoint: []string{"sh", "-c", script},
			Network: network, Labels: labels, StopTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Remove(context.Background(), id) })
		if err := d.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// The server answers with the file's words.
	serve := func(words string) string {
		return "mkdir -p /www && echo " + words + " > /www/index.html && exec httpd -f -p 127.0.0.1:8000 -h /www"
	}
	get := func(id string) string {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			c, err := d.DialLoopback(ctx, id, 8000)
			if err == nil {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c)
				if err != nil {
					t.Fatal(err)
				}
				return string(b)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().After(deadline) {
				t.Fatalf("dial %s: %v", id, err)
			}
		}
	}
	box := start("none", serve("first"))
	if got := get(box); !strings.HasPrefix(got, "HTTP/1.") || !strings.HasSuffix(got, "first\n") {
		t.Errorf("the answer: %q", got)
	}
	if _, err := d.DialLoopback(ctx, box, 8001); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("a port nothing listens on: %v, want ECONNREFUSED", err)
	}
	// Started again: another namespace, found again.
	if err := d.Stop(ctx, box, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DialLoopback(ctx, box, 8000); err == nil {
		t.Error("a dial of a stopped container succeeded")
	}
	if err := d.Start(ctx, box); err != nil {
		t.Fatal(err)
	}
	if got := get(box); !strings.HasSuffix(got, "first\n") {
		t.Errorf("started again: %q", got)
	}
}
