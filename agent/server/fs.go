package server

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/bothy/bothy/agent/wire"
)

// Defaults and bounds of file operations.
const (
	defaultListDepth  = 16
	defaultMaxEntries = 100_000
	copyBuffer        = 256 << 10
)

// fsOp runs one file operation with this process's credentials. Relative
// paths start at home. in carries uploaded bytes (write, tar_in); out takes
// downloaded bytes (read, tar_out), after head has been called with the
// header. It returns the final result.
func fsOp(req *wire.FsRequest, home string, in io.Reader, out io.Writer, head func(wire.FsResult) error) wire.FsResult {
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(home, p)
		}
		return filepath.Clean(p)
	}
	p := abs(req.Path)
	switch req.Op {
	case wire.OpStat:
		fi, err := os.Lstat(p)
		if err != nil {
			return fail(err)
		}
		info := fileInfo(p, fi)
		return wire.FsResult{Info: &info}
	case wire.OpRead:
		return fsRead(req, p, out, head)
	case wire.OpList:
		return fsList(req, p)
	case wire.OpWrite:
		return fsWrite(req, p, in)
	case wire.OpMkdir:
		mode := fs.FileMode(req.Mode & 0o7777)
		if mode == 0 {
			mode = 0o755
		}
		var err error
		if req.Parents {
			if fi, serr := os.Stat(p); serr == nil && !fi.IsDir() {
				return failCode(wire.FsNotDir, p+" exists and is not a directory")
			}
			err = os.MkdirAll(p, mode)
		} else {
			err = os.Mkdir(p, mode)
		}
		if err != nil {
			return fail(err)
		}
		return statResult(p)
	case wire.OpRemove:
		if _, err := os.Lstat(p); err != nil {
			return fail(err)
		}
		if p == "/" {
			return failCode(wire.FsInvalid, "refusing to remove /")
		}
		var err error
		if req.Recursive {
			err = os.RemoveAll(p)
		} else {
			err = os.Remove(p)
		}
		if err != nil {
			return fail(err)
		}
		return wire.FsResult{}
	case wire.OpMove:
		to := abs(req.To)
		if _, err := os.Lstat(p); err != nil {
			return fail(err)
		}
		if fi, err := os.Lstat(to); err == nil {
			if !req.Overwrite {
				return failCode(wire.FsExists, to+" exists (overwrite was not asked for)")
			}
			if fi.IsDir() {
				return failCode(wire.FsIsDir, to+" is a directory")
			}
		}
		if err := os.Rename(p, to); err != nil {
			return fail(err)
		}
		return statResult(to)
	case wire.OpChmod:
		if err := os.Chmod(p, fs.FileMode(req.Mode&0o7777)); err != nil {
			return fail(err)
		}
		return statResult(p)
	case wire.OpTarOut:
		return tarOut(req, p, out, head)
	case wire.OpTarIn:
		return tarIn(req, p, in)
	case wire.OpRestoreStage:
		return restoreStage(req, p, in)
	case wire.OpRestoreSwap:
		return restoreSwap(p, req.Staging)
	case wire.OpRestoreAbort:
		return restoreAbort(p, req.Staging)
	}
	return failCode(wire.FsInvalid, "unknown file operation "+string(req.Op))
}

func statResult(p string) wire.FsResult {
	fi, err := os.Lstat(p)
	if err != nil {
		return fail(err)
	}
	info := fileInfo(p, fi)
	return wire.FsResult{Info: &info}
}

// fsRead sends a file's bytes (or a byte range of them), or a directory's
// listing.
func fsRead(req *wire.FsRequest, p string, out io.Writer, head func(wire.FsResult) error) wire.FsResult {
	f, err := os.Open(p)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	if fi.IsDir() {
		return fsList(req, p)
	}
	info := fileInfo(p, fi)
	if !fi.Mode().IsRegular() {
		return failCode(wire.FsInvalid, p+" is not a regular file")
	}
	if req.Offset < 0 || req.Offset > fi.Size() {
		return failCode(wire.FsInvalid, "offset is outside the file")
	}
	n := fi.Size() - req.Offset
	if req.Length >= 0 && req.Length < n {
		n = req.Length
	}
	if _, err := f.Seek(req.Offset, io.SeekStart); err != nil {
		return fail(err)
	}
	info.Size = n // the bytes that follow
	if err := head(wire.FsResult{Header: true, Info: &info}); err != nil {
		return fail(err)
	}
	sent, err := io.CopyBuffer(out, io.LimitReader(f, n), make([]byte, copyBuffer))
	if err != nil {
		return fail(err)
	}
	if sent != n {
		return failCode(wire.FsIO, "the file shrank while it was read")
	}
	return wire.FsResult{Bytes: sent}
}

// fsList lists a directory, down to req.Depth levels when recursive.
func fsList(req *wire.FsRequest, p string) wire.FsResult {
	fi, err := os.Stat(p)
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() {
		return failCode(wire.FsNotDir, p+" is not a directory")
	}
	depth := 1
	if req.Recursive {
		depth = req.Depth
		if depth <= 0 {
			depth = defaultListDepth
		}
	}
	limit := req.MaxEntries
	if limit <= 0 {
		limit = defaultMaxEntries
	}
	info := fileInfo(p, fi)
	res := wire.FsResult{Info: &info, Entries: []wire.FileInfo{}}
	var walk func(dir string, level int) error
	walk = func(dir string, level int) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			if dir == p {
				return err
			}
			return nil // an unreadable subdirectory is listed, not entered
		}
		for _, e := range entries {
			if len(res.Entries) >= limit {
				res.Truncated = true
				return nil
			}
			full := filepath.Join(dir, e.Name())
			efi, err := e.Info()
			if err != nil {
				continue
			}
			res.Entries = append(res.Entries, fileInfo(full, efi))
			if e.IsDir() && level < depth {
				if err := walk(full, level+1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(p, 1); err != nil {
		return fail(err)
	}
	sort.Slice(res.Entries, func(i, j int) bool { return res.Entries[i].Path < res.Entries[j].Path })
	return res
}

// fsWrite stores in at p atomically: into a temporary file beside it, renamed
// over p once complete. A failure leaves p as it was.
func fsWrite(req *wire.FsRequest, p string, in io.Reader) wire.FsResult {
	dir := filepath.Dir(p)
	// A write that fails leaves nothing: not its file, nor the directories
	// it made for it (those still empty).
	ok := false
	if req.Parents {
		made := missingDirs(dir)
		defer func() {
			if !ok {
				for _, d := range made {
					_ = os.Remove(d)
				}
			}
		}()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fail(err)
		}
	}
	mode := fs.FileMode(req.Mode & 0o7777)
	if fi, err := os.Stat(p); err == nil {
		if fi.IsDir() {
			return failCode(wire.FsIsDir, p+" is a directory")
		}
		if mode == 0 {
			mode = fi.Mode().Perm()
		}
	}
	if mode == 0 {
		mode = 0o644
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(p)+".bothy-*")
	if err != nil {
		return fail(err)
	}
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	src := in
	if req.MaxBytes > 0 {
		src = io.LimitReader(in, req.MaxBytes+1)
	}
	n, err := io.CopyBuffer(tmp, src, make([]byte, copyBuffer))
	if err != nil {
		return fail(err)
	}
	if req.MaxBytes > 0 && n > req.MaxBytes {
		return failCode(wire.FsTooLarge, "the file is larger than the limit")
	}
	if err := tmp.Chmod(mode); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fail(err)
	}
	ok = true
	res := statResult(p)
	res.Bytes = n
	return res
}

// missingDirs lists dir and those of its ancestors that do not exist yet,
// deepest first.
func missingDirs(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
			return out
		}
		out = append(out, d)
	}
}

func fileInfo(p string, fi fs.FileInfo) wire.FileInfo {
	info := wire.FileInfo{Name: fi.Name(), Path: p, Size: fi.Size(), Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UTC()}
	if fi.Mode()&fs.ModeSetuid != 0 {
		info.Mode |= 0o4000
	}
	if fi.Mode()&fs.ModeSetgid != 0 {
		info.Mode |= 0o2000
	}
	if fi.Mode()&fs.ModeSticky != 0 {
		info.Mode |= 0o1000
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		info.Owner, info.Group = accounts.names(st.Uid, st.Gid)
	}
	switch {
	case fi.Mode().IsRegular():
		info.Type = "file"
	case fi.IsDir():
		info.Type = "dir"
	case fi.Mode()&fs.ModeSymlink != 0:
		info.Type = "symlink"
		info.Target, _ = os.Readlink(p)
	default:
		info.Type = "other"
	}
	return info
}

func failCode(code, msg string) wire.FsResult { return wire.FsResult{Code: code, Error: msg} }

// fail classifies an error by its errno.
func fail(err error) wire.FsResult {
	var errno syscall.Errno
	code := wire.FsIO
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT:
			code = wire.FsNotFound
		case syscall.EISDIR:
			code = wire.FsIsDir
		case syscall.ENOTDIR:
			code = wire.FsNotDir
		case syscall.EACCES, syscall.EPERM, syscall.EROFS:
			code = wire.FsPermission
		case syscall.EEXIST:
			code = wire.FsExists
		case syscall.ENOTEMPTY:
			code = wire.FsNotEmpty
		case syscall.EINVAL, syscall.ENAMETOOLONG, syscall.ELOOP, syscall.EXDEV:
			code = wire.FsInvalid
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			code = wire.FsNoSpace
		}
	}
	var fe *wire.FsError
	if errors.As(err, &fe) {
		return wire.FsResult{Code: fe.Code, Error: fe.Msg}
	}
	return wire.FsResult{Code: code, Error: strings.TrimPrefix(err.Error(), "open ")}
}
