package server

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/bothy/bothy/agent/wire"
)

// FuzzCheckPath: CheckPath never panics, and what it accepts is a non-empty,
// bounded, UTF-8 path without NUL.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/", "a", "../../etc/passwd", "%2e%2e/", "/tmp/a\x00b", "", "\xff", strings.Repeat("a", wire.MaxPath+1), "ünï code"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if wire.CheckPath(p) != nil {
			return
		}
		if p == "" || len(p) > wire.MaxPath || !utf8.ValidString(p) || strings.ContainsRune(p, 0) {
			t.Fatalf("accepted %q", p)
		}
	})
}

// FuzzTarExtract: whatever the archive, extraction writes nothing outside the
// target directory.
func FuzzTarExtract(f *testing.F) {
	f.Add(tarball(tar.Header{Name: "ok", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3}))
	f.Add(tarball(tar.Header{Name: "../x", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1}))
	f.Add(tarball(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "d/../.."}, tar.Header{Name: "l/x", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(tarball(tar.Header{Name: "d", Typeflag: tar.TypeSymlink, Linkname: "."}, tar.Header{Name: "d/d/d/f", Typeflag: tar.TypeReg, Size: 1}))
	f.Add(tarball(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "/etc/passwd"}))
	f.Fuzz(func(t *testing.T, archive []byte) {
		parent := t.TempDir()
		target := filepath.Join(parent, "target")
		outside := filepath.Join(parent, "outside")
		os.Mkdir(target, 0o755)
		os.Mkdir(outside, 0o755)
		req := &wire.FsRequest{Op: "tar_in", Path: target, MaxBytes: 1 << 20, MaxEntries: 1000}
		fsOp(req, "/", bytes.NewReader(archive), nil, nil)
		ents, _ := os.ReadDir(parent)
		out, _ := os.ReadDir(outside)
		if len(ents) != 2 || len(out) != 0 {
			t.Fatalf("extraction wrote outside: parent %v, outside %v", ents, out)
		}
		// No symlink inside resolves to a path outside the target.
		filepath.Walk(target, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode()&os.ModeSymlink != 0 {
				if real, err := filepath.EvalSymlinks(p); err == nil && !strings.HasPrefix(real+"/", target+"/") {
					t.Fatalf("link %s resolves to %s, outside", p, real)
				}
			}
			return nil
		})
	})
}
