package server

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/bothy/bothy/agent/wire"
)

// Bounds of an extraction when the request names none.
const (
	defaultExtractBytes   = 8 << 30
	defaultExtractEntries = 1_000_000
)

// tarOut streams p (a directory's contents, or one file) as a tar archive.
// Entry names are relative to p; symlinks are archived as links, not followed.
func tarOut(req *wire.FsRequest, p string, out io.Writer, head func(wire.FsResult) error) wire.FsResult {
	fi, err := os.Lstat(p)
	if err != nil {
		return fail(err)
	}
	info := fileInfo(p, fi)
	if err := head(wire.FsResult{Header: true, Info: &info}); err != nil {
		return fail(err)
	}
	tw := tar.NewWriter(out)
	var files, bytes int64
	add := func(full, name string, fi fs.FileInfo) error {
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(full); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		files++
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(full)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err := io.CopyBuffer(tw, io.LimitReader(f, hdr.Size), make([]byte, copyBuffer))
		bytes += n
		if err == nil && n != hdr.Size {
			err = fmt.Errorf("%s shrank while it was archived", full)
		}
		return err
	}
	if !fi.IsDir() {
		err = add(p, fi.Name(), fi)
	} else {
		err = filepath.WalkDir(p, func(full string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if full == p {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(p, full)
			return add(full, filepath.ToSlash(rel), fi)
		})
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		return fail(err)
	}
	return wire.FsResult{Files: files, Bytes: bytes}
}

// tarIn extracts a tar archive (plain or gzip) into the directory p. Nothing
// leaves p: entries with absolute names or "..", and links that point outside,
// are refused, and every file is made through an os.Root. The archive is first
// extracted into a staging directory inside p and moved into place only when
// all of it was good, so a refused archive changes nothing. Bytes and entries
// are bounded, so a small compressed bomb cannot fill the disk.
func tarIn(req *wire.FsRequest, p string, in io.Reader) (res wire.FsResult) {
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
		return failCode(wire.FsNotDir, p+" is not a directory")
	}
	// The directories made for the target are removed again when the
	// archive is refused.
	made := firstMissing(p)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fail(err)
	}
	defer func() {
		if made != "" && res.Code != "" {
			os.RemoveAll(made)
		}
	}()
	staging, err := os.MkdirTemp(p, ".bothy-extract-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(staging)
	stage, err := os.OpenRoot(staging)
	if err != nil {
		return fail(err)
	}
	defer stage.Close()

	br := bufio.NewReaderSize(in, 64<<10)
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return failCode(wire.FsInvalid, "bad gzip stream: "+err.Error())
		}
		defer gz.Close()
		src = gz
	}
	res, dirModes, err := extractBounded(req, src, stage, req.AnyLinks)
	if err != nil {
		return fail(err)
	}
	// Move the staged tree into place, once nothing in the way would stop
	// part of it.
	target, err := os.OpenRoot(p)
	if err != nil {
		return fail(err)
	}
	defer target.Close()
	if err := checkMerge(staging, target); err != nil {
		return fail(err)
	}
	stageRel := filepath.Base(staging)
	err = filepath.WalkDir(staging, func(full string, d fs.DirEntry, err error) error {
		if err != nil || full == staging {
			return err
		}
		rel, _ := filepath.Rel(staging, full)
		if d.IsDir() {
			if fi, err := target.Lstat(rel); err == nil && fi.IsDir() {
				return nil // merge into the existing directory
			}
			if err := target.Rename(filepath.Join(stageRel, rel), rel); err != nil {
				return err
			}
			return filepath.SkipDir // moved whole
		}
		return target.Rename(filepath.Join(stageRel, rel), rel)
	})
	if err != nil {
		return fail(err)
	}
	for name, mode := range dirModes {
		_ = target.Chmod(name, mode)
	}
	return res
}

// firstMissing is the outermost directory on the way to p that does not
// exist yet ("" when p exists).
func firstMissing(p string) string {
	missing := ""
	for dir := filepath.Clean(p); ; dir = filepath.Dir(dir) {
		if _, err := os.Lstat(dir); err == nil {
			return missing
		}
		missing = dir
		if parent := filepath.Dir(dir); parent == dir {
			return missing
		}
	}
}

// checkMerge refuses, before anything moves, a staged tree that cannot merge
// into target: a directory where target has something else (a file, or a
// link), or anything but a directory where target has a directory.
func checkMerge(staging string, target *os.Root) error {
	return filepath.WalkDir(staging, func(full string, d fs.DirEntry, err error) error {
		if err != nil || full == staging {
			return err
		}
		rel, _ := filepath.Rel(staging, full)
		fi, err := target.Lstat(rel)
		if errors.Is(err, fs.ErrNotExist) {
			if d.IsDir() {
				return filepath.SkipDir // moved whole
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case d.IsDir() && !fi.IsDir():
			return &wire.FsError{Code: wire.FsNotDir, Msg: fmt.Sprintf("the archive has a directory %s where there is a file", rel)}
		case !d.IsDir() && fi.IsDir():
			return &wire.FsError{Code: wire.FsIsDir, Msg: fmt.Sprintf("the archive has a file %s where there is a directory", rel)}
		}
		return nil
	})
}

// errUnsafe refuses an archive entry that would leave the target directory.
var errUnsafe = errors.New("unsafe archive entry")

// extract writes every entry of tr under root, within the bounds.
// extractBounded is extract of the tar in src, within req's bounds (or the
// defaults).
func extractBounded(req *wire.FsRequest, src io.Reader, root *os.Root, anyLinks bool) (wire.FsResult, map[string]fs.FileMode, error) {
	budget := req.MaxBytes
	if budget <= 0 {
		budget = defaultExtractBytes
	}
	maxEntries := int64(req.MaxEntries)
	if maxEntries <= 0 {
		maxEntries = defaultExtractEntries
	}
	return extract(tar.NewReader(src), root, budget, maxEntries, anyLinks)
}

func extract(tr *tar.Reader, root *os.Root, budget, maxEntries int64, anyLinks bool) (wire.FsResult, map[string]fs.FileMode, error) {
	var res wire.FsResult
	dirModes := map[string]fs.FileMode{}
	// links are the symbolic links the archive made: no later entry may go
	// through one, which could lead it anywhere.
	links := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return res, dirModes, nil
		}
		if err != nil {
			return res, nil, &wire.FsError{Code: wire.FsInvalid, Msg: "bad tar stream: " + err.Error()}
		}
		if res.Files++; res.Files > maxEntries {
			return res, nil, &wire.FsError{Code: wire.FsTooLarge, Msg: fmt.Sprintf("the archive has more than %d entries", maxEntries)}
		}
		name, err := safeName(hdr.Name)
		if err != nil {
			return res, nil, err
		}
		if name == "." {
			continue
		}
		if err := throughLink(links, name); err != nil {
			return res, nil, err
		}
		mode := fs.FileMode(hdr.Mode) & fs.ModePerm
		if dir := path.Dir(name); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return res, nil, err
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return res, nil, err
			}
			dirModes[name] = mode | 0o700
		case tar.TypeReg:
			if hdr.Size > budget {
				return res, nil, &wire.FsError{Code: wire.FsTooLarge, Msg: "the archive expands past the limit"}
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
			if err != nil {
				return res, nil, err
			}
			n, err := io.CopyBuffer(f, io.LimitReader(tr, hdr.Size), make([]byte, copyBuffer))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return res, nil, err
			}
			budget -= n
			res.Bytes += n
		case tar.TypeSymlink:
			if !anyLinks {
				if err := safeLink(name, hdr.Linkname); err != nil {
					return res, nil, err
				}
			}
			if err := root.Symlink(hdr.Linkname, name); err != nil {
				return res, nil, err
			}
			links[name] = true
		case tar.TypeLink:
			old, err := safeName(hdr.Linkname)
			if err != nil {
				return res, nil, err
			}
			if err := throughLink(links, old); err != nil {
				return res, nil, err
			}
			if links[old] {
				return res, nil, &wire.FsError{Code: wire.FsInvalid, Msg: fmt.Sprintf("%v: hard link %q to the symbolic link %q", errUnsafe, name, old)}
			}
			if err := root.Link(old, name); err != nil {
				return res, nil, err
			}
		default:
			res.Files-- // devices, fifos and the like are not extracted
		}
	}
}

// throughLink refuses a name one of whose parents is a link of links.
func throughLink(links map[string]bool, name string) error {
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if links[dir] {
			return &wire.FsError{Code: wire.FsInvalid, Msg: fmt.Sprintf("%v: %q goes through the link %q", errUnsafe, name, dir)}
		}
	}
	return nil
}

// safeName cleans an archive entry's name and refuses one that is absolute or
// climbs out with "..".
func safeName(name string) (string, error) {
	if err := wire.CheckPath(name); err != nil {
		return "", &wire.FsError{Code: wire.FsInvalid, Msg: fmt.Sprintf("%v: %v", errUnsafe, err)}
	}
	clean := path.Clean(strings.ReplaceAll(name, `\`, "/"))
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", &wire.FsError{Code: wire.FsInvalid, Msg: fmt.Sprintf("%v: %q leaves the target directory", errUnsafe, name)}
	}
	return clean, nil
}

// safeLink refuses a symlink whose target, resolved from the link's
// directory, leaves the target directory.
func safeLink(name, target string) error {
	if target == "" || path.IsAbs(target) {
		return &wire.FsError{Code: wire.FsInvalid, Msg: fmt.Sprintf("%v: link %q points at %q", errUnsafe, name, target)}
	}
	resolved := path.Clean(path.Join(path.Dir(name), target))
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return &wire.FsError{Code: wire.FsInvalid, Msg: fmt.Sprintf("%v: link %q points outside, at %q", errUnsafe, name, target)}
	}
	return nil
}

// Extract unpacks a tar (or tar.gz) stream into dir with the same safety as a
// sandbox's tar_in: nothing leaves dir, bytes and entries are bounded, and a
// refused archive changes nothing. The CLI uses it for downloads.
func Extract(dir string, r io.Reader, maxBytes int64, maxEntries int) (files, bytes int64, err error) {
	res := tarIn(&wire.FsRequest{Op: wire.OpTarIn, Path: dir, MaxBytes: maxBytes, MaxEntries: maxEntries}, dir, r)
	return res.Files, res.Bytes, res.Err()
}

// Archive writes p (a directory's contents, or one file) to w as a tar stream,
// as a sandbox's tar_out does. The CLI uses it for uploads.
func Archive(p string, w io.Writer) (files, bytes int64, err error) {
	res := tarOut(&wire.FsRequest{Op: wire.OpTarOut, Path: p}, p, w, func(wire.FsResult) error { return nil })
	return res.Files, res.Bytes, res.Err()
}
