package agent

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
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
func fsOp(req *FsRequest, home string, in io.Reader, out io.Writer, head func(FsResult) error) FsResult {
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(home, p)
		}
		return filepath.Clean(p)
	}
	p := abs(req.Path)
	switch req.Op {
	case OpStat:
		fi, err := os.Lstat(p)
		if err != nil {
			return fail(err)
		}
		info := fileInfo(p, fi)
		return FsResult{Info: &info}
	case OpRead:
		return fsRead(req, p, out, head)
	case OpList:
		return fsList(req, p)
	case OpWrite:
		return fsWrite(req, p, in)
	case OpMkdir:
		mode := fs.FileMode(req.Mode & 0o7777)
		if mode == 0 {
			mode = 0o755
		}
		var err error
		if req.Parents {
			if fi, serr := os.Stat(p); serr == nil && !fi.IsDir() {
				return failCode(FsNotDir, p+" exists and is not a directory")
			}
			err = os.MkdirAll(p, mode)
		} else {
			err = os.Mkdir(p, mode)
		}
		if err != nil {
			return fail(err)
		}
		return statResult(p)
	case OpRemove:
		if _, err := os.Lstat(p); err != nil {
			return fail(err)
		}
		if p == "/" {
			return failCode(FsInvalid, "refusing to remove /")
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
		return FsResult{}
	case OpMove:
		to := abs(req.To)
		if _, err := os.Lstat(p); err != nil {
			return fail(err)
		}
		if fi, err := os.Lstat(to); err == nil {
			if !req.Overwrite {
				return failCode(FsExists, to+" exists (overwrite was not asked for)")
			}
			if fi.IsDir() {
				return failCode(FsIsDir, to+" is a directory")
			}
		}
		if err := os.Rename(p, to); err != nil {
			return fail(err)
		}
		return statResult(to)
	case OpChmod:
		if err := os.Chmod(p, fs.FileMode(req.Mode&0o7777)); err != nil {
			return fail(err)
		}
		return statResult(p)
	case OpTarOut:
		return tarOut(req, p, out, head)
	case OpTarIn:
		return tarIn(req, p, in)
	case OpRestoreStage:
		return restoreStage(req, p, in)
	case OpRestoreSwap:
		return restoreSwap(p, req.Staging)
	case OpRestoreAbort:
		return restoreAbort(p, req.Staging)
	}
	return failCode(FsInvalid, "unknown file operation "+string(req.Op))
}

func statResult(p string) FsResult {
	fi, err := os.Lstat(p)
	if err != nil {
		return fail(err)
	}
	info := fileInfo(p, fi)
	return FsResult{Info: &info}
}

// fsRead sends a file's bytes (or a byte range of them), or a directory's
// listing.
func fsRead(req *FsRequest, p string, out io.Writer, head func(FsResult) error) FsResult {
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
		return failCode(FsInvalid, p+" is not a regular file")
	}
	if req.Offset < 0 || req.Offset > fi.Size() {
		return failCode(FsInvalid, "offset is outside the file")
	}
	n := fi.Size() - req.Offset
	if req.Length >= 0 && req.Length < n {
		n = req.Length
	}
	if _, err := f.Seek(req.Offset, io.SeekStart); err != nil {
		return fail(err)
	}
	info.Size = n // the bytes that follow
	if err := head(FsResult{Header: true, Info: &info}); err != nil {
		return fail(err)
	}
	sent, err := io.CopyBuffer(out, io.LimitReader(f, n), make([]byte, copyBuffer))
	if err != nil {
		return fail(err)
	}
	if sent != n {
		return failCode(FsIO, "the file shrank while it was read")
	}
	return FsResult{Bytes: sent}
}

// fsList lists a directory, down to req.Depth levels when recursive.
func fsList(req *FsRequest, p string) FsResult {
	fi, err := os.Stat(p)
	if err != nil {
		return fail(err)
	}
	if !fi.IsDir() {
		return failCode(FsNotDir, p+" is not a directory")
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
	res := FsResult{Info: &info, Entries: []FileInfo{}}
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
func fsWrite(req *FsRequest, p string, in io.Reader) FsResult {
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
			return failCode(FsIsDir, p+" is a directory")
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
		return failCode(FsTooLarge, "the file is larger than the limit")
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

func fileInfo(p string, fi fs.FileInfo) FileInfo {
	info := FileInfo{Name: fi.Name(), Path: p, Size: fi.Size(), Mode: uint32(fi.Mode().Perm()), MTime: fi.ModTime().UTC()}
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

func failCode(code, msg string) FsResult { return FsResult{Code: code, Error: msg} }

// fail classifies an error by its errno.
func fail(err error) FsResult {
	var errno syscall.Errno
	code := FsIO
	if errors.As(err, &errno) {
		switch errno {
		case syscall.ENOENT:
			code = FsNotFound
		case syscall.EISDIR:
			code = FsIsDir
		case syscall.ENOTDIR:
			code = FsNotDir
		case syscall.EACCES, syscall.EPERM, syscall.EROFS:
			code = FsPermission
		case syscall.EEXIST:
			code = FsExists
		case syscall.ENOTEMPTY:
			code = FsNotEmpty
		case syscall.EINVAL, syscall.ENAMETOOLONG, syscall.ELOOP, syscall.EXDEV:
			code = FsInvalid
		case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
			code = FsNoSpace
		}
	}
	var fe *FsError
	if errors.As(err, &fe) {
		return FsResult{Code: fe.Code, Error: fe.Msg}
	}
	return FsResult{Code: code, Error: strings.TrimPrefix(err.Error(), "open ")}
}
