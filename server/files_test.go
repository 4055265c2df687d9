package server

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bothy/bothy/api"
)

func TestFileRoundTrips(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)

	data := make([]byte, 10<<20)
	rand.Read(data)
	fi, err := c.WriteFile(ctx, sb.ID, "/work/deep dir/bïnary ✓.bin", bytes.NewReader(data), api.WriteOptions{Parents: true, Mode: "0600", Size: int64(len(data))})
	if err != nil || fi.Size != int64(len(data)) || fi.Mode != "0600" {
		t.Fatalf("write: %+v %v", fi, err)
	}
	var back bytes.Buffer
	if _, err := c.ReadFile(ctx, sb.ID, "/work/deep dir/bïnary ✓.bin", &back); err != nil || sha256.Sum256(back.Bytes()) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes: %v", back.Len(), err)
	}
	// A byte range.
	status, body := f.call(t, "GET", "/v1/sandboxes/"+sb.ID+"/files?path="+url.QueryEscape("/work/deep dir/bïnary ✓.bin"), f.user, "", "Range", "bytes=100-199")
	if status != http.StatusPartialContent || !bytes.Equal(body, data[100:200]) {
		t.Fatalf("range: %d, %d bytes", status, len(body))
	}
	// An empty file.
	if _, err := c.WriteFile(ctx, sb.ID, "/work/empty", strings.NewReader(""), api.WriteOptions{Size: 0}); err != nil {
		t.Fatal(err)
	}
	back.Reset()
	if n, err := c.ReadFile(ctx, sb.ID, "/work/empty", &back); err != nil || n != 0 {
		t.Fatalf("empty: %d %v", n, err)
	}
	list, err := c.ListDir(ctx, sb.ID, "/work", 3)
	if err != nil || len(list.Entries) != 3 {
		t.Fatalf("list: %+v %v", list, err)
	}
	if _, err := c.Move(ctx, sb.ID, "/work/empty", "/work/empty2", false); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Chmod(ctx, sb.ID, "/work/empty2", "0751"); err != nil || fi.Mode != "0751" {
		t.Fatalf("chmod: %+v %v", fi, err)
	}
	if _, err := c.Mkdir(ctx, sb.ID, "/work/a/b/c", ""); err != nil {
		t.Fatal(err)
	}

	// A 5,000-file tree in as a tar, and out again.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for i := 0; i < 5000; i++ {
		body := fmt.Sprintf("file %d", i)
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("d%02d/f%04d.txt", i%50, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	res, err := c.UploadArchive(ctx, sb.ID, "/tree", bytes.NewReader(tb.Bytes()))
	if err != nil || res.Files != 5000 {
		t.Fatalf("upload archive: %+v %v", res, err)
	}
	var out bytes.Buffer
	if _, err := c.DownloadArchive(ctx, sb.ID, "/tree", &out); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&out)
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files++
			if h.Name == "d07/f4957.txt" {
				b, _ := io.ReadAll(tr)
				if string(b) != "file 4957" {
					t.Fatalf("content %q", b)
				}
			}
		}
	}
	if files != 5000 {
		t.Fatalf("downloaded %d files", files)
	}
}

func TestFileErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	as := mustCreateWith(t, c, api.CreateSandboxRequest{User: "user"})
	if _, err := c.WriteFile(ctx, sb.ID, "/data/f", strings.NewReader("original"), api.WriteOptions{Parents: true, Size: 8}); err != nil {
		t.Fatal(err)
	}
	if res, err := c.Exec(ctx, as.ID, api.ExecRequest{Shell: "echo s > /root/secret && chmod 600 /root/secret", User: "root"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("plant a root-only file: %v %+v", err, res)
	}
	files := "/v1/sandboxes/" + sb.ID + "/files"
	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"missing", "GET", files + "?path=/nope", "", 404},
		{"stat missing", "GET", files + "/stat?path=/nope", "", 404},
		{"delete missing", "DELETE", files + "?path=/nope", "", 404},
		{"write over a directory", "PUT", files + "?path=/data", "x", 409},
		{"file as a parent", "PUT", files + "?path=/data/f/child", "x", 409},
		{"mkdir over a file", "POST", files + "/mkdir", `{"path":"/data/f"}`, 409},
		{"remove a non-empty dir", "DELETE", files + "?path=/data", "", 409},
		{"move onto a file", "POST", files + "/move", `{"from":"/data/f","to":"/etc/hostname"}`, 409},
		{"permission", "PUT", "/v1/sandboxes/" + as.ID + "/files?path=/root/x", "x", 403},
		{"permission to read", "GET", "/v1/sandboxes/" + as.ID + "/files?path=/root/secret", "", 403},
		{"too large", "PUT", files + "?path=/data/f", strings.Repeat("x", 17<<20), 413},
		{"empty path", "GET", files + "?path=", "", 400},
		{"NUL byte", "GET", files + "?path=/etc%00passwd", "", 400},
		{"not UTF-8", "GET", files + "?path=/tmp/%ff", "", 400},
		{"too long", "GET", files + "?path=/" + strings.Repeat("a", 4100), "", 400},
		{"bad mode", "PUT", files + "?path=/data/g&mode=999", "x", 400},
		{"bad chmod", "POST", files + "/chmod", `{"path":"/data/f","mode":"rwx"}`, 400},
		{"bad range", "GET", files + "?path=/data/f", "", 416},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.name == "bad range" {
				hdr = []string{"Range", "bytes=9-3"}
			}
			if tc.method == "PUT" {
				hdr = append(hdr, "Content-Type", "application/octet-stream")
			}
			status, body := f.call(t, tc.method, tc.path, f.user, tc.body, hdr...)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			envelope(t, body)
		})
	}
	// Paths that climb, encoded or not, and a symlink to / inside the sandbox,
	// reach the sandbox's own files, as its user: never the host's.
	if res, err := c.Exec(ctx, as.ID, api.ExecRequest{Shell: "ln -s / /tmp/toroot"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("symlink: %v %+v", err, res)
	}
	for _, raw := range []string{"%2e%2e/%2e%2e/etc/passwd", "../../../../etc/passwd", "/tmp/toroot/etc/passwd", "/tmp/toroot/../../etc/passwd"} {
		status, body := f.call(t, "GET", "/v1/sandboxes/"+as.ID+"/files?path="+raw, f.user, "")
		if status != 200 || !strings.Contains(string(body), "user:x:1000") || strings.Contains(string(body), "/bin/bash") {
			t.Fatalf("%s: %d %q", raw, status, body)
		}
	}
	if status, _ := f.call(t, "GET", "/v1/sandboxes/"+as.ID+"/files?path=/tmp/toroot/root/secret", f.user, ""); status != 403 {
		t.Fatalf("a root-only file through a symlink to /: %d", status)
	}

	// Nothing changed.
	var b bytes.Buffer
	if _, err := c.ReadFile(ctx, sb.ID, "/data/f", &b); err != nil || b.String() != "original" {
		t.Fatalf("after the failures: %q %v", b.String(), err)
	}
	list, _ := c.ListDir(ctx, sb.ID, "/data", 1)
	if len(list.Entries) != 1 {
		t.Fatalf("leftovers: %+v", list.Entries)
	}
}

// TestFileTraversalRace: while the sandbox flips a symlink between a directory
// and / as fast as it can, thousands of reads and writes through it reach only
// the sandbox's own files: never a secret planted on the host, never a file
// made on the host.
func TestFileTraversalRace(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	marker := fmt.Sprintf("bothy-race-%d", time.Now().UnixNano())
	secret := filepath.Join(os.TempDir(), marker+"-secret")
	if err := os.WriteFile(secret, []byte("HOST SECRET"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(secret) })
	if _, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "mkdir -p /tmp/d && (while true; do ln -sfn / /tmp/flip; ln -sfn /tmp/d /tmp/flip; done) >/dev/null 2>&1 &"}); err != nil {
		t.Fatal(err)
	}
	paths := []string{"/tmp/flip" + secret, "/tmp/flip/../../.." + secret, "../../../../.." + secret, secret}
	for i := 0; i < 1500; i++ {
		var b bytes.Buffer
		_, err := c.ReadFile(ctx, sb.ID, paths[i%len(paths)], &b)
		if strings.Contains(b.String(), "HOST SECRET") {
			t.Fatalf("read the host's secret through %s", paths[i%len(paths)])
		}
		if err == nil {
			t.Fatalf("read %s: the file exists only on the host", paths[i%len(paths)])
		}
		name := fmt.Sprintf("/tmp/flip/%s-%d", marker, i)
		if _, err := c.WriteFile(ctx, sb.ID, name, strings.NewReader("x"), api.WriteOptions{Size: 1}); err != nil && !api.IsNotFound(err) {
			var e *api.Error
			if !errors.As(err, &e) || e.Status >= 500 {
				t.Fatalf("write %s: %v", name, err)
			}
		}
	}
	for _, dir := range []string{"/", "/tmp", os.TempDir()} {
		matches, _ := filepath.Glob(filepath.Join(dir, marker+"-*"))
		for _, m := range matches {
			if m != secret {
				t.Fatalf("a file was made on the host: %s", m)
			}
		}
	}
	// The writes landed inside the sandbox.
	res, err := c.Exec(ctx, sb.ID, api.ExecRequest{Shell: "ls / /tmp/d | grep -c " + marker})
	if err != nil || strings.TrimSpace(res.Stdout) == "0" {
		t.Fatalf("writes inside the sandbox: %q %v", res.Stdout, err)
	}
}

func TestFileWatch(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	c := api.NewClient(f.url, f.user)
	sb := mustCreate(t, c)
	if _, err := c.Mkdir(ctx, sb.ID, "/w", ""); err != nil {
		t.Fatal(err)
	}
	// collect gathers events until until says stop, or the watch fails.
	collect := func(from uint64, until func(api.FileEvent) bool) ([]api.FileEvent, error) {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var got []api.FileEvent
		done := errors.New("done")
		err := c.WatchFiles(wctx, sb.ID, "/w", true, from, func(e api.FileEvent) error {
			got = append(got, e)
			if until(e) {
				return done
			}
			return nil
		})
		if err != done {
			return got, fmt.Errorf("watch: %v, got %+v", err, got)
		}
		return got, nil
	}
	watch := func(from uint64, until func(api.FileEvent) bool) []api.FileEvent {
		t.Helper()
		got, err := collect(from, until)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	exec := func(shell string) { t.Helper(); mustShell(t, c, sb.ID, shell) }
	ready, subSeen := make(chan struct{}), make(chan struct{})
	type outcome struct {
		got []api.FileEvent
		err error
	}
	result := make(chan outcome, 1)
	go func() {
		got, err := collect(0, func(e api.FileEvent) bool {
			if e.Type == "ready" {
				close(ready)
			}
			if e.Type == "create" && e.Path == "/w/sub" {
				close(subSeen)
			}
			return e.Type == "remove" && e.Path == "/w/sub/f2"
		})
		result <- outcome{got, err}
	}()
	select {
	case <-ready:
	case o := <-result:
		t.Fatalf("the watch ended before it was ready: %v", o.err)
	}
	// A file made and removed in a new directory before its watch exists
	// is seen by nothing (inotify cannot); the directory's own event says
	// its watch exists.
	exec("echo a > /w/f1; mkdir /w/sub")
	select {
	case <-subSeen:
	case o := <-result:
		t.Fatalf("the watch ended before /w/sub was seen: %v", o.err)
	}
	exec("echo b > /w/sub/f2; mv /w/f1 /w/f3; rm /w/sub/f2")
	o := <-result
	if o.err != nil {
		t.Fatal(o.err)
	}
	got := o.got
	var seen []string
	var last uint64
	for _, e := range got {
		if e.Type == "ready" {
			continue
		}
		if e.Seq <= last {
			t.Fatalf("sequence numbers not increasing: %+v", got)
		}
		last = e.Seq
		s := e.Type + " " + e.Path
		if e.From != "" {
			s += " from " + e.From
		}
		if n := len(seen); n > 0 && seen[n-1] == s {
			continue // one write may be reported more than once
		}
		seen = append(seen, s)
	}
	want := []string{"create /w/f1", "write /w/f1", "create /w/sub", "create /w/sub/f2", "write /w/sub/f2", "rename /w/f3 from /w/f1", "remove /w/sub/f2"}
	if strings.Join(seen, "; ") != strings.Join(want, "; ") {
		t.Fatalf("events:\n got  %q\n want %q", seen, want)
	}

	// Reconnect from the last seen: what happened meanwhile is replayed.
	// The agent reads inotify on its own time: a live watch that sees the
	// event says the agent has it, before the reconnect asks for it.
	live := make(chan error, 1)
	liveReady := make(chan struct{})
	go func() {
		_, err := collect(0, func(e api.FileEvent) bool {
			if e.Type == "ready" {
				close(liveReady)
			}
			return e.Type == "create" && e.Path == "/w/f4"
		})
		live <- err
	}()
	select {
	case <-liveReady:
	case err := <-live:
		t.Fatalf("the live watch ended before it was ready: %v", err)
	}
	exec("echo c > /w/f4")
	if err := <-live; err != nil {
		t.Fatal(err)
	}
	got = watch(last, func(e api.FileEvent) bool { return e.Type == "ready" })
	if len(got) < 2 || got[0].Type != "create" || got[0].Path != "/w/f4" {
		t.Fatalf("replay: %+v", got)
	}
	last = got[len(got)-2].Seq

	// Too far behind: a gap, once the agent has read the flood's events
	// (it reads them in order; until then a reconnect is replayed in full).
	exec("i=0; while [ $i -lt 2500 ]; do echo x > /w/g$i; i=$((i+1)); done")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		// A reader that falls behind the flood is cut off: that is a try
		// too.
		got, err := collect(last, func(e api.FileEvent) bool { return e.Type == "ready" })
		if err == nil && got[0].Type == "gap" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want a gap first, got %+v (%v)", got[:min(3, len(got))], err)
		}
	}

	// Server-sent events, for browsers' EventSource.
	req, _ := http.NewRequest("GET", f.url+"/v1/sandboxes/"+sb.ID+"/files/watch?path=/w", nil)
	req.Header.Set("Authorization", "Bearer "+f.user)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _ := io.ReadAtLeast(resp.Body, buf, 20)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || !strings.Contains(string(buf[:n]), "event: ready") {
		t.Fatalf("SSE: %s %q", ct, buf[:n])
	}
	if status, _ := f.call(t, "GET", "/v1/sandboxes/"+sb.ID+"/files/watch?path=/nope", f.user, ""); status != 404 {
		t.Fatalf("watch of a missing directory: %d", status)
	}
}
