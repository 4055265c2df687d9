package fsapi

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/internal/testenv"
	"github.com/bothy/bothy/orchestrator"
)

// oneSandbox is sandbox "sb-1" of key "k", whose agent serves this test
// process (on the host's files, as this process's user).
type oneSandbox struct {
	conn    *agent.Conn
	attachs int
}

var (
	_ Sandboxes = (*oneSandbox)(nil)
	_ Sandboxes = (*orchestrator.Orchestrator)(nil)
)

func (o *oneSandbox) Attach(ctx context.Context, owner, id string, fn func(context.Context, orchestrator.Sandbox, *agent.Conn) error) error {
	o.attachs++
	if owner != "k" || id != "sb-1" {
		return cerrdefs.ErrNotFound.WithMessage("sandbox " + id + " not found")
	}
	return fn(ctx, orchestrator.Sandbox{ID: id, Owner: owner}, o.conn)
}

func newService(t *testing.T, lim Limits) (*Service, *oneSandbox, string) {
	t.Helper()
	sb := &oneSandbox{conn: testenv.AgentConn(t)}
	return New(sb, nil, lim), sb, t.TempDir()
}

var target = Target{Owner: "k", Sandbox: "sb-1"}

func TestFileOperationsAndTheirErrorClasses(t *testing.T) {
	s, _, dir := newService(t, Limits{MaxFileBytes: 1 << 20})
	ctx := context.Background()
	p := filepath.Join(dir, "a", "b.txt")

	if _, err := s.Write(ctx, target, p, 0, false, strings.NewReader("x")); !cerrdefs.IsNotFound(err) {
		t.Fatalf("write without its parent: %v, want not found", err)
	}
	info, err := s.Write(ctx, target, p, 0o600, true, strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Type != TypeFile || info.Size != 5 || info.Mode != 0o600 || info.Path != p {
		t.Fatalf("written: %+v", info)
	}
	var got bytes.Buffer
	list, err := s.Read(ctx, target, ReadOptions{Path: p, Offset: 1, Length: 3}, func(f FileInfo) (io.Writer, error) {
		if f.Size != 3 {
			t.Errorf("the header of a 3-byte range says %d bytes", f.Size)
		}
		return &got, nil
	})
	if err != nil || list != nil || got.String() != "ell" {
		t.Fatalf("read a range: %q, %v, %v", got.String(), list, err)
	}
	list, err = s.Read(ctx, target, ReadOptions{Path: dir, Length: -1, Recursive: true}, nil)
	if err != nil || list == nil || list.Dir.Type != TypeDir || len(list.Entries) != 2 {
		t.Fatalf("list: %+v, %v", list, err)
	}
	if _, err := s.Mkdir(ctx, target, filepath.Join(dir, "a"), 0, false); !cerrdefs.IsAlreadyExists(err) {
		t.Fatalf("mkdir of an existing directory: %v, want already exists", err)
	}
	if err := s.Remove(ctx, target, filepath.Join(dir, "a"), false); !cerrdefs.IsFailedPrecondition(err) {
		t.Fatalf("remove of a non-empty directory: %v, want a failed precondition", err)
	}
	moved, err := s.Move(ctx, target, p, filepath.Join(dir, "c.txt"), false)
	if err != nil || moved.Name != "c.txt" {
		t.Fatalf("move: %+v, %v", moved, err)
	}
	if _, err := s.Stat(ctx, target, p); !cerrdefs.IsNotFound(err) {
		t.Fatalf("stat of the moved-away path: %v, want not found", err)
	}
	if info, err := s.Chmod(ctx, target, filepath.Join(dir, "c.txt"), 0o640); err != nil || info.Mode != 0o640 {
		t.Fatalf("chmod: %+v, %v", info, err)
	}
	big := io.LimitReader(zeros{}, 2<<20)
	_, err = s.Write(ctx, target, filepath.Join(dir, "big"), 0, false, big)
	if !errors.Is(err, ErrTooLarge) || !cerrdefs.IsResourceExhausted(err) {
		t.Fatalf("write over the limit: %v, want too large", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "big")); !os.IsNotExist(err) {
		t.Fatalf("a refused write left a file: %v", err)
	}
	if err := s.Remove(ctx, target, filepath.Join(dir, "a"), true); err != nil {
		t.Fatal(err)
	}
}

func TestPathsAreCheckedBeforeTheSandboxIsReached(t *testing.T) {
	s, sb, _ := newService(t, Limits{})
	ctx := context.Background()
	for _, p := range []string{"", "a\x00b", "\xff", strings.Repeat("a", MaxPath+1)} {
		if _, err := s.Stat(ctx, target, p); !cerrdefs.IsInvalidArgument(err) {
			t.Errorf("stat %q: %v, want invalid argument", p, err)
		}
	}
	if _, err := s.Move(ctx, target, "/a", "", false); !cerrdefs.IsInvalidArgument(err) || !strings.HasPrefix(err.Error(), "to: ") {
		t.Errorf("move to an empty path: %v", err)
	}
	if err := s.RestorePaths(ctx, target, []string{"/"}, nil); !cerrdefs.IsInvalidArgument(err) {
		t.Errorf("restore of /: %v", err)
	}
	if sb.attachs != 0 {
		t.Fatalf("%d calls reached the sandbox", sb.attachs)
	}
	if _, err := s.Stat(ctx, Target{Owner: "other", Sandbox: "sb-1"}, "/"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("another key's sandbox: %v", err)
	}
}

// oneSnapshot is snapshot "snap-1" of key "k": it holds a file named "one"
// ("old") wherever one is asked for, and nothing else.
type oneSnapshot struct{}

var _ Snapshots = oneSnapshot{}

func (oneSnapshot) SnapshotImage(_ context.Context, owner, id string) (string, error) {
	if owner != "k" || id != "snap-1" {
		return "", cerrdefs.ErrNotFound.WithMessage("snapshot " + id + " not found")
	}
	return "bothy/snapshot:snap-1", nil
}

func (s oneSnapshot) ReadPath(ctx context.Context, owner, id, p string) (io.ReadCloser, bool, error) {
	if _, err := s.SnapshotImage(ctx, owner, id); err != nil {
		return nil, false, err
	}
	if filepath.Base(p) != "one" {
		return nil, false, nil
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "one", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg, ModTime: time.Now()})
	tw.Write([]byte("old"))
	tw.Close()
	return io.NopCloser(&b), true, nil
}

func TestArchivesRoundTripAndRestorePaths(t *testing.T) {
	s, sb, dir := newService(t, Limits{})
	ctx := context.Background()
	src := filepath.Join(dir, "src")
	for name, body := range map[string]string{"one": "1", "sub/two": "22"} {
		if _, err := s.Write(ctx, target, filepath.Join(src, name), 0, true, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	var archive bytes.Buffer
	if err := s.ArchiveOut(ctx, target, src, func() (io.Writer, error) { return &archive, nil }); err != nil {
		t.Fatal(err)
	}
	res, err := s.ArchiveIn(ctx, target, filepath.Join(dir, "dst"), bytes.NewReader(archive.Bytes()))
	if err != nil || res.Files != 3 || res.Bytes != 3 { // two files and a directory
		t.Fatalf("extract: %+v, %v", res, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "dst", "sub", "two")); string(b) != "22" {
		t.Fatalf("extracted: %q", b)
	}

	// Put back dst/one from a "snapshot" holding it; dst/gone, which the
	// snapshot lacks, is removed; the rest is untouched.
	if _, err := s.Write(ctx, target, filepath.Join(dir, "dst", "gone"), 0, false, strings.NewReader("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(ctx, target, filepath.Join(dir, "dst", "one"), 0, false, strings.NewReader("changed")); err != nil {
		t.Fatal(err)
	}
	paths := []string{filepath.Join(dir, "dst", "one"), filepath.Join(dir, "dst", "gone")}
	if err := s.RestoreSnapshotPaths(ctx, target, "snap-1", paths); !cerrdefs.IsUnavailable(err) {
		t.Fatalf("a restore without snapshots: %v", err)
	}
	s = New(sb, oneSnapshot{}, Limits{})
	// Another key's snapshot, or none: not found, and the sandbox untouched.
	attachs := sb.attachs
	for _, tg := range []struct {
		t    Target
		snap string
	}{{target, "snap-2"}, {Target{Owner: "k2", Sandbox: "sb-1"}, "snap-1"}} {
		if err := s.RestoreSnapshotPaths(ctx, tg.t, tg.snap, paths); !cerrdefs.IsNotFound(err) {
			t.Fatalf("restore from %s as %s: %v", tg.snap, tg.t.Owner, err)
		}
	}
	if sb.attachs != attachs {
		t.Fatal("a restore from no snapshot reached the sandbox")
	}
	if err := s.RestoreSnapshotPaths(ctx, target, "snap-1", paths); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"one": "old", "sub/two": "22", "gone": ""} {
		b, err := os.ReadFile(filepath.Join(dir, "dst", name))
		if string(b) != want || (want == "" && !os.IsNotExist(err)) {
			t.Errorf("after the restore %s holds %q (%v), want %q", name, b, err, want)
		}
	}
}

func TestWatchReportsChanges(t *testing.T) {
	s, _, dir := newService(t, Limits{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := errors.New("seen")
	var seen []Event
	err := s.Watch(ctx, target, WatchOptions{Path: dir}, func(e Event) error {
		seen = append(seen, e)
		switch {
		case e.Type == EventReady:
			if _, err := s.Write(ctx, target, filepath.Join(dir, "new"), 0, false, strings.NewReader("x")); err != nil {
				return err
			}
		case e.Path == filepath.Join(dir, "new"):
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("watch ended with %v after %+v", err, seen)
	}
	if _, err := s.Read(ctx, target, ReadOptions{Path: filepath.Join(dir, "missing"), Length: -1}, nil); !cerrdefs.IsNotFound(err) {
		t.Fatalf("read of a missing file: %v", err)
	}
	if err := s.Watch(ctx, target, WatchOptions{Path: filepath.Join(dir, "missing")}, func(Event) error { return nil }); !cerrdefs.IsNotFound(err) {
		t.Fatalf("watch of a missing directory: %v, want not found", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
