package server

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bothy/bothy/agent/mountinfo"
	"github.com/bothy/bothy/agent/wire"
)

// captureChunk is how much of the layer is sent at once.
const captureChunk = 256 << 10

// serveCapture answers op "capture": the changes to the sandbox's
// filesystem since req.SinceNs, as a layer (wire/capture.go). The sandbox
// goes on running: a file written while it is read is caught as it is then.
func (s *Server) serveCapture(ctx context.Context, st net.Conn, out *wire.FrameSender, req *wire.CaptureRequest) {
	if req == nil {
		_ = out.SendJSON(wire.OpResult{Error: "capture without a request"})
		return
	}
	image, err := readCapturePaths(st)
	if err != nil {
		_ = out.SendJSON(wire.OpResult{Error: err.Error()})
		return
	}
	mounts, err := mountinfo.Points()
	if err != nil {
		_ = out.SendJSON(wire.OpResult{Error: "read the mount table: " + err.Error()})
		return
	}
	c := &capturer{since: req.SinceNs, image: image, mounts: mounts, written: map[string]bool{}, links: map[devIno]string{},
		buf: make([]byte, 128<<10), budget: s.listBudget}
	err = c.walk(ctx)
	if err == nil {
		err = c.whiteouts()
	}
	var size int64
	if err == nil {
		size, err = c.size()
	}
	if errors.Is(err, errTooManyChanges) {
		_ = out.SendJSON(wire.OpResult{Code: wire.CodeTooLarge, Error: fmt.Sprintf(
			"the sandbox changed more paths than its agent lists in %d MiB, a quarter of its memory: take this checkpoint with the engine's commit", c.budget>>20)})
		return
	}
	if err != nil {
		_ = out.SendJSON(wire.OpResult{Error: "capture: " + err.Error()})
		return
	}
	if out.SendJSON(wire.OpResult{}) != nil || out.SendJSON(wire.CaptureStart{Bytes: size}) != nil {
		return
	}
	fw := bufio.NewWriterSize(&frameWriter{out}, captureChunk)
	cw := &countingWriter{w: fw}
	err = c.stream(ctx, cw)
	if err == nil {
		err = fw.Flush()
	}
	if err == nil && cw.n != size {
		err = fmt.Errorf("the layer came to %d bytes, not the %d announced", cw.n, size)
	}
	if err != nil {
		s.log.Warn("capture failed", "err", err)
		_ = out.SendJSON(wire.OpResult{Error: "capture: " + err.Error()})
		return
	}
	_ = out.SendJSON(wire.OpResult{})
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// readCapturePaths reads the image's path list: input frames up to the end
// of input.
func readCapturePaths(r io.Reader) (map[string]bool, error) {
	paths := map[string]bool{}
	total := 0
	for {
		typ, payload, err := wire.ReadFrame(r)
		if err != nil {
			return nil, fmt.Errorf("read the image's paths: %w", err)
		}
		switch typ {
		case wire.FrameStdinEOF:
			return paths, nil
		case wire.FrameStdin:
		default:
			return nil, fmt.Errorf("unexpected frame %q in the image's paths", typ)
		}
		if total += len(payload); total > wire.MaxCapturePaths {
			return nil, fmt.Errorf("the image's paths pass %d bytes", wire.MaxCapturePaths)
		}
		for p := range bytes.SplitSeq(payload, []byte{0}) {
			if len(p) > 0 {
				paths[string(p)] = true
			}
		}
	}
}

type devIno struct{ dev, ino uint64 }

// capturer makes a layer of what changed since a time: a walk lists its
// entries, whose size is then known before their content is read.
type capturer struct {
	since   int64           // ns since the epoch: ctimes before it are the image's
	image   map[string]bool // the image's paths
	mounts  map[string]bool // mount points: not the container's own files
	entries []captureEntry
	written map[string]bool   // the paths entries hold
	links   map[devIno]string // the first name of each multiply linked file
	buf     []byte
	seen    int
	// budget bounds held, the bytes the entries and their bookkeeping
	// take (about): the agent lists every changed path before it streams.
	budget, held int64
}

// errTooManyChanges: the entries would take more than the capture's budget.
var errTooManyChanges = errors.New("too many changed paths")

// captureEntry is one entry of the layer: its header and, for a regular
// file, the path its content is read from.
type captureEntry struct {
	h    *tar.Header
	path string
}

// engineFiles are what the engine makes in every container, below what
// the container writes (Docker's init layer), that are not mount points.
var engineFiles = map[string]bool{"/.dockerenv": true, "/etc/mtab": true}

// skipped says p is not the container's to capture: bothy's own mount,
// every mount point (the engine's /etc/hosts and the like, /proc, /dev,
// volumes) and the engine's own files, as a commit leaves them out.
func (c *capturer) skipped(p string) bool {
	return p == "/.bothy" || strings.HasPrefix(p, "/.bothy/") || engineFiles[p] || (p != "/" && c.mounts[p])
}

// underMount says p lies below a mount point, where the image's files are
// hidden rather than gone.
func (c *capturer) underMount(p string) bool {
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if c.mounts[d] {
			return true
		}
	}
	return false
}

// walk writes every path that is not the image's or has changed since.
func (c *capturer) walk(ctx context.Context) error {
	return filepath.WalkDir("/", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != "/" && errors.Is(err, fs.ErrNotExist) {
				return nil // gone while the walk went on
			}
			return err
		}
		if c.skipped(p) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if c.seen++; c.seen%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		if p == "/" || (c.image[p] && st.Ctim.Nano() < c.since) {
			return nil
		}
		return c.add(p, &st)
	})
}

// add lists p, as st describes it, in the layer.
func (c *capturer) add(p string, st *unix.Stat_t) error {
	h := &tar.Header{
		Name: strings.TrimPrefix(p, "/"), Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), Format: tar.FormatPAX,
	}
	var key devIno
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
	case unix.S_IFREG:
		h.Typeflag, h.Size = tar.TypeReg, st.Size
		if st.Nlink > 1 {
			key = devIno{st.Dev, st.Ino}
			if first, ok := c.links[key]; ok {
				h.Typeflag, h.Size, h.Linkname = tar.TypeLink, 0, first
			} else {
				c.links[key] = h.Name
			}
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		h.Typeflag, h.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		h.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			h.Typeflag = tar.TypeBlock
		}
		h.Devmajor, h.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		h.Typeflag = tar.TypeFifo
	default:
		return nil // a socket: nothing a layer holds
	}
	xattrs, err := listXattrs(p)
	if err != nil {
		return err
	}
	if len(xattrs) > 0 {
		h.PAXRecords = map[string]string{}
		for k, v := range xattrs {
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	// A header, its names, its xattrs, the path kept to read it and the
	// written map's entry, with their allocations' overhead.
	c.held += 384 + 3*int64(len(p)) + int64(len(h.Linkname))
	for k, v := range h.PAXRecords {
		c.held += int64(len(k) + len(v) + 64)
	}
	if c.budget > 0 && c.held > c.budget {
		return errTooManyChanges
	}
	e := captureEntry{h: h}
	if h.Typeflag == tar.TypeReg {
		e.path = p
	}
	c.entries = append(c.entries, e)
	c.written[p] = true
	return nil
}

// size is the layer's size in bytes: each entry's header as a writer of
// its own writes it, its content padded to a block, and the end.
func (c *capturer) size() (int64, error) {
	cw := &countingWriter{w: io.Discard}
	for _, e := range c.entries {
		if err := tar.NewWriter(cw).WriteHeader(e.h); err != nil {
			return 0, err
		}
		cw.n += (e.h.Size + 511) &^ 511
	}
	return cw.n + 1024, nil
}

// stream writes the layer: each entry's header, and a regular file's content
// as the header says, whatever the file did meanwhile (cut if it grew,
// zeros where it shrank or went).
func (c *capturer) stream(ctx context.Context, w io.Writer) error {
	tw := tar.NewWriter(w)
	for i, e := range c.entries {
		if i%1024 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := tw.WriteHeader(e.h); err != nil {
			return err
		}
		if e.path == "" || e.h.Size == 0 {
			continue
		}
		var n int64
		// O_NONBLOCK: the path may have become a FIFO since the walk.
		if f, err := os.OpenFile(e.path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0); err == nil {
			n, err = io.CopyBuffer(tw, io.LimitReader(f, e.h.Size), c.buf)
			f.Close()
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("read %s: %w", e.path, err)
			}
		}
		for n < e.h.Size {
			k := min(int64(len(c.buf)), e.h.Size-n)
			clear(c.buf[:k])
			if _, err := tw.Write(c.buf[:k]); err != nil {
				return err
			}
			n += k
		}
	}
	return tw.Close()
}

// whiteouts adds a whiteout for each of the image's paths that is gone,
// unless its directory went too (the directory's whiteout covers it).
func (c *capturer) whiteouts() error {
	paths := make([]string, 0, len(c.image))
	for p := range c.image {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var st unix.Stat_t
	for _, p := range paths {
		if p == "/" || !path.IsAbs(p) || path.Clean(p) != p || c.skipped(p) || c.underMount(p) {
			continue
		}
		if c.written[p] {
			continue // gone since the walk wrote it: the layer has it
		}
		if err := unix.Lstat(p, &st); !errors.Is(err, unix.ENOENT) {
			continue // there, or a path through what is no longer a directory
		}
		// A directory, reached through no symlink: a whiteout below a link
		// would be applied where the link points.
		dir := path.Dir(p)
		if err := unix.Lstat(dir, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			continue
		}
		if real, err := filepath.EvalSymlinks(dir); err != nil || real != dir {
			continue
		}
		name := path.Join(strings.TrimPrefix(dir, "/"), ".wh."+path.Base(p))
		c.entries = append(c.entries, captureEntry{h: &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o600, Format: tar.FormatPAX}})
	}
	return nil
}

// listXattrs reads p's extended attributes (not following a symlink).
func listXattrs(p string) (map[string]string, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, err
	}
	names := make([]byte, size)
	if size, err = unix.Llistxattr(p, names); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name := range strings.SplitSeq(string(names[:size]), "\x00") {
		if name == "" {
			continue
		}
		n, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			continue // gone, or not ours to read
		}
		v := make([]byte, n)
		if n, err = unix.Lgetxattr(p, name, v); err != nil {
			continue
		}
		out[name] = string(v[:n])
	}
	return out, nil
}
