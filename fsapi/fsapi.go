// Package fsapi is the file operations domain: reading, writing, listing and
// changing files inside a sandbox, archives in and out, watches, and putting
// paths back from a snapshot. Every operation runs inside the sandbox through
// its agent, as the sandbox's user (or the one the caller names), so bothy
// never follows a path the sandbox can write.
//
// Paths are checked here before anything reaches the sandbox; failures are
// classified with containerd/errdefs, so the front doors map them to their
// protocol once.
package fsapi

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/bothy/bothy/agent/wire"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/agent"
	"github.com/bothy/bothy/internal/errclass"
	"github.com/bothy/bothy/orchestrator"
)

// MaxPath is the longest path an operation accepts, in bytes.
const MaxPath = wire.MaxPath

// Sandboxes reaches a sandbox's agent: the orchestrator, which wakes a
// stopped sandbox, checks its owner and counts the call as activity.
type Sandboxes interface {
	Attach(ctx context.Context, owner, id string, fn func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error) error
}

// Snapshots opens paths of owners' snapshots, for restores by path
// (package snapshot serves it).
type Snapshots interface {
	// SnapshotImage fails, as not found, for a snapshot its owner lacks.
	SnapshotImage(ctx context.Context, owner, id string) (string, error)
	// ReadPath is a tar of path as it is in owner's snapshot id, named from
	// the path's base name; found is false when the snapshot has no such
	// path.
	ReadPath(ctx context.Context, owner, id, path string) (rc io.ReadCloser, found bool, err error)
}

// Limits bound what one operation moves; a zero field takes its default.
type Limits struct {
	// MaxFileBytes bounds a written file, in bytes (default 4 GiB).
	MaxFileBytes int64
	// MaxExtractBytes bounds what one archive may expand to (default 8 GiB).
	MaxExtractBytes int64
}

// Service runs file operations in sandboxes.
type Service struct {
	sandboxes Sandboxes
	snaps     Snapshots
	lim       Limits
}

// New returns the file operations over sandboxes, and restores by path from
// snaps (nil: not served).
func New(sandboxes Sandboxes, snaps Snapshots, lim Limits) *Service {
	if lim.MaxFileBytes <= 0 {
		lim.MaxFileBytes = 4 << 30
	}
	if lim.MaxExtractBytes <= 0 {
		lim.MaxExtractBytes = 8 << 30
	}
	return &Service{sandboxes: sandboxes, snaps: snaps, lim: lim}
}

// Target names the sandbox an operation runs in and the user it runs as
// (empty: the sandbox's own user).
type Target struct {
	Owner   string
	Sandbox string
	User    string
}

// FileType is what kind of file an entry is.
type FileType string

// File types.
const (
	TypeFile    FileType = "file"
	TypeDir     FileType = "dir"
	TypeSymlink FileType = "symlink"
	TypeOther   FileType = "other"
)

// FileInfo describes one file.
type FileInfo struct {
	Name  string
	Path  string
	Type  FileType
	Size  int64
	Mode  uint32 // permission bits
	MTime time.Time
	// Target is where a symlink points.
	Target string
	// Owner and Group are the file's user and group, by name.
	Owner, Group string
}

// Listing is a directory and its entries.
type Listing struct {
	Dir     FileInfo
	Entries []FileInfo
	// Truncated says the listing stopped at the agent's entry cap.
	Truncated bool
}

// ArchiveResult counts what an extraction wrote.
type ArchiveResult struct {
	Files int64
	Bytes int64
}

// ReadOptions selects what Read returns.
type ReadOptions struct {
	Path string
	// Offset and Length select a byte range of a file; Length < 0 reads to
	// the end.
	Offset, Length int64
	// Recursive and Depth list a directory's subdirectories too.
	Recursive bool
	Depth     int
}

// Read streams a file, or lists a directory. For a file, open is called with
// its information before any data and returns where the data goes; the
// listing is nil. For a directory, the listing is returned and open is not
// called.
func (s *Service) Read(ctx context.Context, t Target, o ReadOptions, open func(FileInfo) (io.Writer, error)) (*Listing, error) {
	if err := CheckPath("path", o.Path); err != nil {
		return nil, err
	}
	req := wire.FsRequest{Op: wire.OpRead, Path: o.Path, Offset: o.Offset, Length: o.Length, Recursive: o.Recursive, Depth: o.Depth}
	res, err := s.call(ctx, t, req, nil, func(h wire.FsResult) (io.Writer, error) {
		return open(infoOf(h.Info))
	})
	if err != nil {
		return nil, err
	}
	if res.Info != nil && res.Info.Type == string(TypeDir) {
		l := &Listing{Dir: infoOf(res.Info), Entries: make([]FileInfo, 0, len(res.Entries)), Truncated: res.Truncated}
		for i := range res.Entries {
			l.Entries = append(l.Entries, infoOf(&res.Entries[i]))
		}
		return l, nil
	}
	return nil, nil
}

// Write stores body at p atomically: a reader sees the old file or the whole
// new one. mode 0 is 0644; parents makes missing directories.
func (s *Service) Write(ctx context.Context, t Target, p string, mode uint32, parents bool, body io.Reader) (FileInfo, error) {
	if err := CheckPath("path", p); err != nil {
		return FileInfo{}, err
	}
	res, err := s.call(ctx, t, wire.FsRequest{Op: wire.OpWrite, Path: p, Mode: mode, Parents: parents, MaxBytes: s.lim.MaxFileBytes}, body, nil)
	return infoOf(res.Info), err
}

// Stat describes p (a symlink itself, not its target).
func (s *Service) Stat(ctx context.Context, t Target, p string) (FileInfo, error) {
	return s.simple(ctx, t, wire.FsRequest{Op: wire.OpStat, Path: p})
}

// Mkdir makes directory p (mode 0 is 0755), with its parents when asked.
func (s *Service) Mkdir(ctx context.Context, t Target, p string, mode uint32, parents bool) (FileInfo, error) {
	return s.simple(ctx, t, wire.FsRequest{Op: wire.OpMkdir, Path: p, Mode: mode, Parents: parents})
}

// Remove deletes p; a non-empty directory only when recursive.
func (s *Service) Remove(ctx context.Context, t Target, p string, recursive bool) error {
	_, err := s.simple(ctx, t, wire.FsRequest{Op: wire.OpRemove, Path: p, Recursive: recursive})
	return err
}

// Move renames from to to, replacing an existing to only with overwrite.
func (s *Service) Move(ctx context.Context, t Target, from, to string, overwrite bool) (FileInfo, error) {
	if err := CheckPath("to", to); err != nil {
		return FileInfo{}, err
	}
	return s.simple(ctx, t, wire.FsRequest{Op: wire.OpMove, Path: from, To: to, Overwrite: overwrite})
}

// Chmod sets p's permission bits.
func (s *Service) Chmod(ctx context.Context, t Target, p string, mode uint32) (FileInfo, error) {
	return s.simple(ctx, t, wire.FsRequest{Op: wire.OpChmod, Path: p, Mode: mode})
}

// ArchiveOut streams p (a directory's contents, or one file) as a tar. open is
// called once the archive is known to start and returns where it goes.
func (s *Service) ArchiveOut(ctx context.Context, t Target, p string, open func() (io.Writer, error)) error {
	if err := CheckPath("path", p); err != nil {
		return err
	}
	_, err := s.call(ctx, t, wire.FsRequest{Op: wire.OpTarOut, Path: p}, nil, func(wire.FsResult) (io.Writer, error) {
		return open()
	})
	return err
}

// ArchiveIn extracts a tar (or tar.gz) into directory p, all or nothing.
func (s *Service) ArchiveIn(ctx context.Context, t Target, p string, body io.Reader) (ArchiveResult, error) {
	if err := CheckPath("path", p); err != nil {
		return ArchiveResult{}, err
	}
	res, err := s.call(ctx, t, wire.FsRequest{Op: wire.OpTarIn, Path: p, MaxBytes: s.lim.MaxExtractBytes}, body, nil)
	return ArchiveResult{Files: res.Files, Bytes: res.Bytes}, err
}

func (s *Service) simple(ctx context.Context, t Target, req wire.FsRequest) (FileInfo, error) {
	if err := CheckPath("path", req.Path); err != nil {
		return FileInfo{}, err
	}
	res, err := s.call(ctx, t, req, nil, nil)
	return infoOf(res.Info), err
}

// call runs req in t's sandbox as t's user, or the sandbox's.
func (s *Service) call(ctx context.Context, t Target, req wire.FsRequest, in io.Reader, sink func(wire.FsResult) (io.Writer, error)) (wire.FsResult, error) {
	var res wire.FsResult
	err := s.sandboxes.Attach(ctx, t.Owner, t.Sandbox, func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error {
		req.User = t.User
		if req.User == "" {
			req.User = sb.Spec.User
		}
		var err error
		res, err = conn.Fs(ctx, req, in, sink)
		return classify(err)
	})
	return res, err
}

// RestoreSnapshotPaths puts back the named absolute paths of t's sandbox as
// they are in its owner's snapshot (RestorePaths); a snapshot the owner
// lacks is not found, before the sandbox is touched (or woken).
func (s *Service) RestoreSnapshotPaths(ctx context.Context, t Target, snapshot string, paths []string) error {
	if s.snaps == nil {
		return cerrdefs.ErrUnavailable.WithMessage("snapshots are not served here")
	}
	if _, err := s.snaps.SnapshotImage(ctx, t.Owner, snapshot); err != nil {
		return err
	}
	return s.RestorePaths(ctx, t, paths, func(ctx context.Context, p string) (io.ReadCloser, bool, error) {
		return s.snaps.ReadPath(ctx, t.Owner, snapshot, p)
	})
}

// RestorePaths puts back the named absolute paths of t's sandbox as open
// gives them (a tar of that one path, named relative to its parent; found
// false when the snapshot has no such path, which then goes), as root, all
// or nothing: every path's copy is staged beside it first, and only once
// all are staged is each swapped in (at once, or around what is mounted
// under it, such as the engine's files in /etc). A path that is itself a
// mount point is refused before anything changes. The rest of the sandbox
// is untouched.
func (s *Service) RestorePaths(ctx context.Context, t Target, paths []string, open func(ctx context.Context, p string) (io.ReadCloser, bool, error)) error {
	for _, p := range paths {
		if err := CheckPath("paths", p); err != nil {
			return err
		}
		if !path.IsAbs(p) || path.Clean(p) == "/" {
			return cerrdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("paths: want absolute paths other than /, got %q", p))
		}
	}
	return s.sandboxes.Attach(ctx, t.Owner, t.Sandbox, func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
		type staged struct{ path, dir string }
		var all []staged
		abort := func() {
			for _, st := range all {
				_, _ = conn.Fs(context.WithoutCancel(ctx), wire.FsRequest{Op: wire.OpRestoreAbort, Path: st.path, Staging: st.dir, User: "root"}, nil, nil)
			}
		}
		for _, p := range paths {
			p = path.Clean(p)
			rc, found, err := open(ctx, p)
			if err != nil {
				abort()
				return err
			}
			if !found {
				rc = io.NopCloser(bytes.NewReader(emptyTar))
			}
			res, err := conn.Fs(ctx, wire.FsRequest{Op: wire.OpRestoreStage, Path: p, User: "root", AnyLinks: true,
				MaxBytes: s.lim.MaxExtractBytes}, rc, nil)
			rc.Close()
			if err != nil {
				abort()
				return fmt.Errorf("restore %s: %w", p, classify(err))
			}
			if res.Info == nil {
				abort()
				return fmt.Errorf("restore %s: the agent named no staging directory", p)
			}
			all = append(all, staged{p, res.Info.Path})
		}
		for i, st := range all {
			if _, err := conn.Fs(ctx, wire.FsRequest{Op: wire.OpRestoreSwap, Path: st.path, Staging: st.dir, User: "root"}, nil, nil); err != nil {
				all = all[i:]
				abort()
				return fmt.Errorf("restore %s: %w", st.path, classify(err))
			}
		}
		return nil
	})
}

// emptyTar is a tar archive with nothing in it.
var emptyTar = func() []byte {
	var b bytes.Buffer
	_ = tar.NewWriter(&b).Close()
	return b.Bytes()
}()

// CheckPath refuses a path no operation accepts: empty, longer than MaxPath,
// not UTF-8, or with a NUL byte. Anything else is a path inside the sandbox,
// resolved there (relative ones from the user's home), so it needs no other
// check here. field names the parameter in the error.
func CheckPath(field, p string) error {
	if err := wire.CheckPath(p); err != nil {
		return cerrdefs.ErrInvalidArgument.WithMessage(field + ": " + err.Error())
	}
	return nil
}

func infoOf(f *wire.FileInfo) FileInfo {
	if f == nil {
		return FileInfo{}
	}
	return FileInfo{Name: f.Name, Path: f.Path, Type: FileType(f.Type), Size: f.Size, Mode: f.Mode, MTime: f.MTime, Target: f.Target,
		Owner: f.Owner, Group: f.Group}
}

// ErrTooLarge and ErrNoSpace tell the two ways an operation exhausts a
// resource apart; both are also errdefs.ErrResourceExhausted.
var (
	ErrTooLarge = errors.New("too large")
	ErrNoSpace  = errors.New("no space left in the sandbox")
)

// classify turns the agent's failure codes into errdefs classes; other
// errors pass through.
func classify(err error) error {
	var fe *wire.FsError
	if !errors.As(err, &fe) {
		return err
	}
	var causes []error
	switch fe.Code {
	case wire.FsNotFound:
		causes = []error{cerrdefs.ErrNotFound}
	case wire.FsExists:
		causes = []error{cerrdefs.ErrAlreadyExists}
	case wire.FsIsDir, wire.FsNotDir, wire.FsNotEmpty:
		causes = []error{cerrdefs.ErrFailedPrecondition}
	case wire.FsPermission:
		causes = []error{cerrdefs.ErrPermissionDenied}
	case wire.FsInvalid:
		causes = []error{cerrdefs.ErrInvalidArgument}
	case wire.FsBusy:
		causes = []error{cerrdefs.ErrConflict}
	case wire.FsTooLarge:
		causes = []error{cerrdefs.ErrResourceExhausted, ErrTooLarge}
	case wire.FsNoSpace:
		causes = []error{cerrdefs.ErrResourceExhausted, ErrNoSpace}
	default:
		causes = []error{cerrdefs.ErrUnknown}
	}
	return errclass.New(fe.Msg, causes...)
}
