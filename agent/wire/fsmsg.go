package wire

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// MaxPath is the longest path a file operation accepts, in bytes.
const MaxPath = 4096

// File operation error codes, carried in FsResult.Code.
const (
	FsNotFound   = "not_found"
	FsIsDir      = "is_dir"
	FsNotDir     = "not_dir"
	FsPermission = "permission"
	FsExists     = "exists"
	FsNotEmpty   = "not_empty"
	FsInvalid    = "invalid"
	FsTooLarge   = "too_large"
	FsNoSpace    = "no_space"
	// FsBusy is a path that cannot be replaced: a mount point.
	FsBusy = "busy"
	FsIO   = "io"
)

// FsOp names a file operation.
type FsOp string

// The file operations.
const (
	OpRead   FsOp = "read"
	OpWrite  FsOp = "write"
	OpStat   FsOp = "stat"
	OpList   FsOp = "list"
	OpMkdir  FsOp = "mkdir"
	OpRemove FsOp = "remove"
	OpMove   FsOp = "move"
	OpChmod  FsOp = "chmod"
	OpTarOut FsOp = "tar_out"
	OpTarIn  FsOp = "tar_in"
	// The steps of a restore by path (restore.go): stage the snapshot's
	// copy beside the path, swap it in, or drop it.
	OpRestoreStage FsOp = "restore_stage"
	OpRestoreSwap  FsOp = "restore_swap"
	OpRestoreAbort FsOp = "restore_abort"
)

// FsRequest is one file operation, run in the sandbox as User.
type FsRequest struct {
	Op   FsOp   `json:"op"`
	Path string `json:"path"`
	// To is the destination of a move.
	To   string `json:"to,omitempty"`
	User string `json:"user,omitempty"`
	// Offset and Length select a byte range to read; Length < 0 reads to the
	// end.
	Offset int64 `json:"offset,omitempty"`
	Length int64 `json:"length,omitempty"`
	// Mode is the permission bits for write, mkdir and chmod (0: 0644 for files,
	// 0755 for directories).
	Mode      uint32 `json:"mode,omitempty"`
	Parents   bool   `json:"parents,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
	Depth     int    `json:"depth,omitempty"`
	Overwrite bool   `json:"overwrite,omitempty"`
	// MaxBytes bounds what a write stores or a tar_in extracts.
	MaxBytes int64 `json:"max_bytes,omitempty"`
	// MaxEntries bounds what a list returns or a tar_in extracts.
	MaxEntries int `json:"max_entries,omitempty"`
	// AnyLinks lets a tar_in keep symlinks that point outside the target (a
	// restore of the sandbox's own files); extraction itself still never
	// leaves the target.
	AnyLinks bool `json:"any_links,omitempty"`
	// Staging names the staging directory of a restore's swap or abort.
	Staging string `json:"staging,omitempty"`
}

// FileInfo describes one file.
type FileInfo struct {
	Name   string    `json:"name"`
	Path   string    `json:"path"`
	Type   string    `json:"type"` // file, dir, symlink, other
	Size   int64     `json:"size"`
	Mode   uint32    `json:"mode"` // permission bits
	MTime  time.Time `json:"mtime"`
	Target string    `json:"target,omitempty"` // of a symlink
	// Owner and Group name the file's user and group as the sandbox's
	// account files do (the number when they do not).
	Owner string `json:"owner,omitempty"`
	Group string `json:"group,omitempty"`
}

// FsResult answers a file operation: a header (for read and tar_out, before the
// data frames) or the final result.
type FsResult struct {
	// Header marks the frame that announces data frames (read, tar_out); the
	// final result follows them.
	Header    bool       `json:"header,omitempty"`
	Code      string     `json:"code,omitempty"`
	Error     string     `json:"error,omitempty"`
	Info      *FileInfo  `json:"info,omitempty"`
	Entries   []FileInfo `json:"entries,omitempty"`
	Truncated bool       `json:"truncated,omitempty"`
	Files     int64      `json:"files,omitempty"`
	Bytes     int64      `json:"bytes,omitempty"`
}

// FsError is a failed file operation, with its code.
type FsError struct {
	Code string
	Msg  string
}

func (e *FsError) Error() string { return e.Msg }

// Err returns the result's error, or nil.
func (r FsResult) Err() error {
	if r.Code == "" && r.Error == "" {
		return nil
	}
	return &FsError{Code: r.Code, Msg: r.Error}
}

// CheckPath refuses a path no file operation accepts: empty, longer than
// MaxPath, not UTF-8, or with a NUL byte. Anything else is a path inside the
// sandbox, resolved there, relative ones from the user's home.
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("path is empty")
	case len(p) > MaxPath:
		return fmt.Errorf("path is longer than %d bytes", MaxPath)
	case !utf8.ValidString(p):
		return errors.New("path is not valid UTF-8")
	}
	for i := 0; i < len(p); i++ {
		if p[i] == 0 {
			return errors.New("path contains a NUL byte")
		}
	}
	return nil
}
