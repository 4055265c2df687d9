package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/bothy/bothy/agent/mountinfo"
	"github.com/bothy/bothy/agent/wire"
	"golang.org/x/sys/unix"
)

// stagePrefix begins the name of a restore's staging directory, beside the
// path it restores.
const stagePrefix = ".bothy-restore-"

// restoreStage extracts in (a tar of p, named relative to p's parent) into
// a new staging directory beside p and returns its path in Info.Path.
func restoreStage(req *wire.FsRequest, p string, in io.Reader) wire.FsResult {
	if p == "/" {
		return failCode(wire.FsInvalid, "/ cannot be restored by path")
	}
	mounts, err := mountinfo.Points()
	if err != nil {
		return fail(err)
	}
	if mounts[p] {
		return failCode(wire.FsBusy, p+" is a mount point: it cannot be replaced")
	}
	parent := filepath.Dir(p)
	made := firstMissing(parent)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fail(err)
	}
	staging, err := os.MkdirTemp(parent, stagePrefix)
	if err != nil {
		return fail(err)
	}
	res := func() wire.FsResult {
		root, err := os.OpenRoot(staging)
		if err != nil {
			return fail(err)
		}
		defer root.Close()
		res, dirModes, err := extractBounded(req, bufio.NewReaderSize(in, 64<<10), root, true)
		if err != nil {
			return fail(err)
		}
		for name, mode := range dirModes {
			_ = root.Chmod(name, mode)
		}
		// The archive holds p's name and what is under it, nothing else.
		entries, err := os.ReadDir(staging)
		if err != nil {
			return fail(err)
		}
		for _, e := range entries {
			if e.Name() != filepath.Base(p) {
				return failCode(wire.FsInvalid, "the archive holds "+e.Name()+", not only "+filepath.Base(p))
			}
		}
		return res
	}()
	if res.Code != "" {
		os.RemoveAll(staging)
		if made != "" {
			os.RemoveAll(made)
		}
		return res
	}
	res.Info = &wire.FileInfo{Name: filepath.Base(staging), Path: staging}
	return res
}

// restoreSwap puts the copy of p staged in staging (by restoreStage) in
// p's place, and removes staging with p's old content.
func restoreSwap(p, staging string) wire.FsResult {
	if filepath.Dir(staging) != filepath.Dir(p) || !strings.HasPrefix(filepath.Base(staging), stagePrefix) {
		return failCode(wire.FsInvalid, staging+" is not a staging directory of "+p)
	}
	if fi, err := os.Lstat(staging); err != nil || !fi.IsDir() {
		return failCode(wire.FsNotFound, "no staging directory "+staging)
	}
	mounts, err := mountinfo.Points()
	if err != nil {
		return fail(err)
	}
	staged := filepath.Join(staging, filepath.Base(p))
	if _, err := os.Lstat(staged); errors.Is(err, fs.ErrNotExist) {
		// The snapshot has no p: p goes, but for what is mounted in it.
		if err := os.Mkdir(staged, 0o755); err != nil {
			return fail(err)
		}
		if !holdsMount(mounts, p) {
			os.Remove(staged)
		}
	}
	s := swap{mounts: mounts, trash: filepath.Join(staging, ".old")}
	if err := os.Mkdir(s.trash, 0o700); err != nil {
		return fail(err)
	}
	if err := s.tree(p, staged); err != nil {
		s.undo()
		return fail(err)
	}
	os.RemoveAll(staging)
	return statResultOrGone(p)
}

// restoreAbort removes staging directories a restore no longer needs.
func restoreAbort(p, staging string) wire.FsResult {
	if filepath.Dir(staging) != filepath.Dir(p) || !strings.HasPrefix(filepath.Base(staging), stagePrefix) {
		return failCode(wire.FsInvalid, staging+" is not a staging directory of "+p)
	}
	if err := os.RemoveAll(staging); err != nil {
		return fail(err)
	}
	return wire.FsResult{}
}

func statResultOrGone(p string) wire.FsResult {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return wire.FsResult{}
	}
	return statResult(p)
}

// swap puts a staged tree in place, keeping the steps to undo.
type swap struct {
	mounts map[string]bool
	trash  string
	n      int
	undos  []func()
}

// tree puts src in dst's place. Without a mount under dst that is one
// exchange of the two (or a rename, when one of them is missing); with
// mounts, dst is kept as a directory and its entries are swapped one by
// one, the mounts themselves left as they are.
func (s *swap) tree(dst, src string) error {
	_, srcErr := os.Lstat(src)
	dfi, dstErr := os.Lstat(dst)
	switch {
	case !holdsMount(s.mounts, dst) || errors.Is(dstErr, fs.ErrNotExist):
		return s.whole(dst, src, srcErr == nil, dstErr == nil)
	case dstErr != nil:
		return dstErr
	}
	if !dfi.IsDir() {
		return &wire.FsError{Code: wire.FsBusy, Msg: dst + " holds a mount but is not a directory"}
	}
	sfi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	if !sfi.IsDir() {
		return &wire.FsError{Code: wire.FsBusy, Msg: "the snapshot has a file at " + dst + ", where mounts are: it cannot replace them"}
	}
	srcEntries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, e := range srcEntries {
		have[e.Name()] = true
		d := filepath.Join(dst, e.Name())
		if s.mounts[d] {
			continue // the mount stays; the snapshot's copy goes
		}
		if err := s.tree(d, filepath.Join(src, e.Name())); err != nil {
			return err
		}
	}
	dstEntries, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	for _, e := range dstEntries {
		d := filepath.Join(dst, e.Name())
		if have[e.Name()] || s.mounts[d] {
			continue
		}
		if holdsMount(s.mounts, d) {
			// Not in the snapshot, but mounts are under it: emptied
			// around them.
			empty := filepath.Join(s.trash, "empty"+strconv.Itoa(s.n))
			s.n++
			if err := os.Mkdir(empty, 0o755); err != nil {
				return err
			}
			if err := s.tree(d, empty); err != nil {
				return err
			}
			continue
		}
		if err := s.away(d); err != nil {
			return err
		}
	}
	// The directory itself takes the snapshot's mode and owner.
	if st, ok := sfi.Sys().(*syscall.Stat_t); ok {
		old := dfi.Sys().(*syscall.Stat_t)
		if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		s.undos = append(s.undos, func() { _ = os.Lchown(dst, int(old.Uid), int(old.Gid)) })
	}
	if err := os.Chmod(dst, sfi.Mode()); err != nil {
		return err
	}
	s.undos = append(s.undos, func() { _ = os.Chmod(dst, dfi.Mode()) })
	return nil
}

// whole puts src in dst's place at once.
func (s *swap) whole(dst, src string, haveSrc, haveDst bool) error {
	switch {
	case haveSrc && haveDst:
		if err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE); err != nil {
			return fmt.Errorf("exchange %s: %w", dst, err)
		}
		s.undos = append(s.undos, func() { _ = unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_EXCHANGE) })
	case haveSrc:
		if err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE); err != nil {
			return fmt.Errorf("put %s: %w", dst, err)
		}
		s.undos = append(s.undos, func() { _ = os.Rename(dst, src) })
	case haveDst:
		return s.away(dst)
	}
	return nil
}

// away moves p into the trash (removed with the staging directory).
func (s *swap) away(p string) error {
	to := filepath.Join(s.trash, strconv.Itoa(s.n))
	s.n++
	if err := os.Rename(p, to); err != nil {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	s.undos = append(s.undos, func() { _ = os.Rename(to, p) })
	return nil
}

// undo takes back every step, last first.
func (s *swap) undo() {
	for i := len(s.undos) - 1; i >= 0; i-- {
		s.undos[i]()
	}
}

// holdsMount says a mount point lies under p (p itself excluded).
func holdsMount(mounts map[string]bool, p string) bool {
	prefix := strings.TrimSuffix(p, "/") + "/"
	for m := range mounts {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}
