package server

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/agent/wire"
)

func fsDo(t *testing.T, c *agent.Conn, req wire.FsRequest, in []byte) (wire.FsResult, []byte, error) {
	t.Helper()
	var body io.Reader
	if in != nil {
		body = bytes.NewReader(in)
	}
	var out bytes.Buffer
	res, err := c.Fs(context.Background(), req, body, func(wire.FsResult) (io.Writer, error) { return &out, nil })
	return res, out.Bytes(), err
}

func code(err error) string {
	var fe *wire.FsError
	if errors.As(err, &fe) {
		return fe.Code
	}
	return ""
}

func TestFsOperations(t *testing.T) {
	c := pair(t)
	dir := t.TempDir()
	data := make([]byte, 3<<20)
	rand.Read(data)

	res, _, err := fsDo(t, c, wire.FsRequest{Op: "write", Path: dir + "/a b/ünï.bin", Parents: true, Mode: 0o600}, data)
	if err != nil || res.Info.Size != int64(len(data)) || res.Info.Mode != 0o600 {
		t.Fatalf("write: %+v %v", res, err)
	}
	_, got, err := fsDo(t, c, wire.FsRequest{Op: "read", Path: dir + "/a b/ünï.bin", Length: -1}, nil)
	if err != nil || sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("read back %d bytes: %v", len(got), err)
	}
	_, got, err = fsDo(t, c, wire.FsRequest{Op: "read", Path: dir + "/a b/ünï.bin", Offset: 10, Length: 5}, nil)
	if err != nil || !bytes.Equal(got, data[10:15]) {
		t.Fatalf("range: %v %v", got, err)
	}
	if res, _, err = fsDo(t, c, wire.FsRequest{Op: "write", Path: dir + "/empty"}, []byte{}); err != nil || res.Info.Size != 0 {
		t.Fatalf("empty file: %+v %v", res, err)
	}
	res, _, err = fsDo(t, c, wire.FsRequest{Op: "read", Path: dir, Length: -1}, nil)
	if err != nil || res.Info.Type != "dir" || len(res.Entries) != 2 {
		t.Fatalf("read of a directory lists it: %+v %v", res, err)
	}
	res, _, err = fsDo(t, c, wire.FsRequest{Op: "list", Path: dir, Recursive: true}, nil)
	if err != nil || len(res.Entries) != 3 {
		t.Fatalf("recursive list: %+v %v", res, err)
	}
	if _, _, err = fsDo(t, c, wire.FsRequest{Op: "mkdir", Path: dir + "/x/y/z", Parents: true}, nil); err != nil {
		t.Fatal(err)
	}
	if res, _, err = fsDo(t, c, wire.FsRequest{Op: "move", Path: dir + "/empty", To: dir + "/x/moved"}, nil); err != nil || res.Info.Name != "moved" {
		t.Fatalf("move: %+v %v", res, err)
	}
	if res, _, err = fsDo(t, c, wire.FsRequest{Op: "chmod", Path: dir + "/x/moved", Mode: 0o751}, nil); err != nil || res.Info.Mode != 0o751 {
		t.Fatalf("chmod: %+v %v", res, err)
	}

	errs := []struct {
		name string
		req  wire.FsRequest
		in   []byte
		want string
	}{
		{"missing", wire.FsRequest{Op: "read", Path: dir + "/nope", Length: -1}, nil, wire.FsNotFound},
		{"stat missing", wire.FsRequest{Op: "stat", Path: dir + "/nope"}, nil, wire.FsNotFound},
		{"write over a dir", wire.FsRequest{Op: "write", Path: dir + "/x"}, []byte("x"), wire.FsIsDir},
		{"list a file", wire.FsRequest{Op: "list", Path: dir + "/a b/ünï.bin"}, nil, wire.FsNotDir},
		{"file as a parent", wire.FsRequest{Op: "write", Path: dir + "/a b/ünï.bin/child"}, []byte("x"), wire.FsNotDir},
		{"no parents", wire.FsRequest{Op: "write", Path: dir + "/q/r/s"}, []byte("x"), wire.FsNotFound},
		{"remove non-empty", wire.FsRequest{Op: "remove", Path: dir + "/x"}, nil, wire.FsNotEmpty},
		{"move onto existing", wire.FsRequest{Op: "move", Path: dir + "/x/moved", To: dir + "/a b/ünï.bin"}, nil, wire.FsExists},
		{"over the limit", wire.FsRequest{Op: "write", Path: dir + "/a b/ünï.bin", MaxBytes: 10}, make([]byte, 11), wire.FsTooLarge},
		{"NUL in path", wire.FsRequest{Op: "stat", Path: "/tmp/a\x00b"}, nil, wire.FsInvalid},
		{"empty path", wire.FsRequest{Op: "stat", Path: ""}, nil, wire.FsInvalid},
		{"long path", wire.FsRequest{Op: "stat", Path: "/" + strings.Repeat("a", wire.MaxPath)}, nil, wire.FsInvalid},
	}
	for _, e := range errs {
		if _, _, err := fsDo(t, c, e.req, e.in); code(err) != e.want {
			t.Errorf("%s: got %v (%s), want %s", e.name, err, code(err), e.want)
		}
	}
	// The failed write changed nothing, and left no temporary file.
	_, got, _ = fsDo(t, c, wire.FsRequest{Op: "read", Path: dir + "/a b/ünï.bin", Length: -1}, nil)
	if !bytes.Equal(got, data) {
		t.Fatal("a refused write changed the file")
	}
	if ents, _ := os.ReadDir(dir + "/a b"); len(ents) != 1 {
		t.Fatalf("leftovers: %v", ents)
	}
	if _, _, err := fsDo(t, c, wire.FsRequest{Op: "remove", Path: dir + "/x", Recursive: true}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestTarRoundTrip(t *testing.T) {
	c := pair(t)
	src, dst := t.TempDir(), t.TempDir()
	for i := 0; i < 50; i++ {
		os.MkdirAll(filepath.Join(src, "d", string(rune('a'+i%5))), 0o755)
		os.WriteFile(filepath.Join(src, "d", string(rune('a'+i%5)), "f"+string(rune('0'+i%10))+".txt"), []byte(strings.Repeat("x", i)), 0o640)
	}
	os.Symlink("d/a", filepath.Join(src, "link"))
	_, archive, err := fsDo(t, c, wire.FsRequest{Op: "tar_out", Path: src}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: dst + "/out"}, archive)
	if err != nil || res.Files == 0 {
		t.Fatalf("tar_in: %+v %v", res, err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "out", "d", "e", "f9.txt")); err != nil || len(b) != 49 {
		t.Fatalf("extracted file: %d %v", len(b), err)
	}
	if l, err := os.Readlink(filepath.Join(dst, "out", "link")); err != nil || l != "d/a" {
		t.Fatalf("link: %q %v", l, err)
	}
	// gzip works too.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(archive)
	zw.Close()
	if _, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: dst + "/gz"}, gz.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// tarball builds an archive from headers (and bodies for regular files).
func tarball(entries ...tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		body := strings.Repeat("x", int(h.Size))
		tw.WriteHeader(&h)
		tw.Write([]byte(body))
	}
	tw.Close()
	return b.Bytes()
}

func TestTarRefusesEscapes(t *testing.T) {
	c := pair(t)
	parent := t.TempDir()
	target := filepath.Join(parent, "target")
	os.Mkdir(target, 0o755)
	os.WriteFile(filepath.Join(target, "keep"), []byte("old"), 0o644)
	reg := func(name string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}
	}
	bad := map[string][]byte{
		"dot dot":          tarball(reg("ok"), reg("../escaped")),
		"deep dot dot":     tarball(reg("a/../../escaped")),
		"absolute":         tarball(reg("/tmp/escaped")),
		"symlink out":      tarball(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../"}),
		"absolute symlink": tarball(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"}),
		"hardlink out":     tarball(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside"}),
	}
	for name, archive := range bad {
		_, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: target}, archive)
		if code(err) != wire.FsInvalid {
			t.Errorf("%s: got %v, want refusal", name, err)
		}
	}
	// Nothing was written outside, and the refused archives changed nothing
	// inside (the good "ok" entry before "../escaped" was not kept either).
	ents, _ := os.ReadDir(parent)
	inside, _ := os.ReadDir(target)
	if len(ents) != 1 || len(inside) != 1 || inside[0].Name() != "keep" {
		t.Fatalf("parent %v, target %v", ents, inside)
	}
	// A bomb: a small gzip that expands past the limit is stopped.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 64 << 20})
	tw.Write(make([]byte, 64<<20))
	tw.Close()
	zw.Close()
	if gz.Len() > 1<<20 {
		t.Fatalf("bomb is %d bytes compressed", gz.Len())
	}
	if _, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: target, MaxBytes: 1 << 20}, gz.Bytes()); code(err) != wire.FsTooLarge {
		t.Fatalf("bomb: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, "big")); err == nil {
		t.Fatal("the bomb left a file")
	}
}

// TestTarIsAllOrNothing: an archive refused for any reason, at any point,
// leaves the target as it was, makes no directory, and is refused as the
// client's fault (never an internal error).
func TestTarIsAllOrNothing(t *testing.T) {
	c := pair(t)
	reg := func(name string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}
	}
	dir := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	link := func(name, to string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: to}
	}
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		// zz is a file in the target: aa must not be written either.
		{"directory over a file", tarball(reg("aa"), dir("zz/"), reg("zz/x")), wire.FsNotDir},
		{"file over a directory", tarball(reg("aa"), reg("sub")), wire.FsIsDir},
		{"through its own link", tarball(link("s", "."), link("s/t", ".."), reg("s/t/file")), wire.FsInvalid},
		{"through a link to a parent", tarball(link("up", ".."), reg("up/escaped")), wire.FsInvalid},
		{"hard link through a link", tarball(link("s", "."), tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "s/zz"}), wire.FsInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			target := filepath.Join(parent, "target")
			os.Mkdir(target, 0o755)
			os.WriteFile(filepath.Join(target, "zz"), []byte("old"), 0o644)
			os.Mkdir(filepath.Join(target, "sub"), 0o755)
			_, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: target}, tc.archive)
			if code(err) != tc.want {
				t.Fatalf("got %v (%s), want %s", err, code(err), tc.want)
			}
			inside, _ := os.ReadDir(target)
			if len(inside) != 2 || inside[0].Name() != "sub" || inside[1].Name() != "zz" {
				t.Fatalf("the target changed: %v", inside)
			}
			if b, _ := os.ReadFile(filepath.Join(target, "zz")); string(b) != "old" {
				t.Fatalf("zz is now %q", b)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 1 {
				t.Fatalf("the parent holds %v", ents)
			}
		})
	}
	// A refused archive into a directory that does not exist yet leaves
	// no directory behind.
	parent := t.TempDir()
	_, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: filepath.Join(parent, "new", "deeper")}, tarball(reg("ok"), reg("../../x")))
	if code(err) != wire.FsInvalid {
		t.Fatalf("got %v", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("a refused archive made %v", ents)
	}
	// A good one merges into an existing directory and makes new ones.
	if _, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: filepath.Join(parent, "new")}, tarball(dir("d/"), reg("d/f"), reg("g"))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fsDo(t, c, wire.FsRequest{Op: "tar_in", Path: filepath.Join(parent, "new")}, tarball(dir("d/"), reg("d/h"))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"d/f", "d/h", "g"} {
		if _, err := os.Stat(filepath.Join(parent, "new", f)); err != nil {
			t.Fatal(err)
		}
	}
}

// brokenBody gives n bytes and then fails, as a client that goes away (or
// sends past its limit) does.
type brokenBody struct{ n int }

var errBroken = errors.New("the client went away")

func (b *brokenBody) Read(p []byte) (int, error) {
	if b.n == 0 {
		return 0, errBroken
	}
	k := min(len(p), b.n)
	clear(p[:k])
	b.n -= k
	return k, nil
}

// An upload that breaks part way leaves nothing behind: not the file, not
// an earlier file of that name, and not the directories made for it; the
// failure is the upload's own.
func TestFsWriteThatBreaksLeavesNothing(t *testing.T) {
	c := pair(t)
	dir := t.TempDir()
	keep := filepath.Join(dir, "kept")
	if err := os.WriteFile(keep, []byte("before"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{keep, filepath.Join(dir, "new/deeper/f")} {
		_, err := c.Fs(context.Background(), wire.FsRequest{Op: "write", Path: p, Parents: true}, &brokenBody{n: 3 << 20}, nil)
		if !errors.Is(err, errBroken) {
			t.Fatalf("write of %s: %v, want the upload's own error", p, err)
		}
	}
	if b, err := os.ReadFile(keep); err != nil || string(b) != "before" {
		t.Fatalf("the earlier file: %q %v", b, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("left behind: %v", entries)
	}
}
