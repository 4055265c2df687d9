package kep

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The REST service: files under the runtime's root, health and metadata
// (agent-sandbox's packages/sandboxd/spec/filesystem/v1/filesystem.yaml).

// FileEntry is one entry of a directory's listing.
type FileEntry struct {
	Name       string `json:"name"`
	Size       int64  `json:"size"`
	Type       string `json:"type"` // file or directory
	ModifiedAt string `json:"modified_at"`
	Mode       string `json:"mode,omitempty"`
}

// DirectoryListing answers a GET of a directory.
type DirectoryListing struct {
	Path    string      `json:"path"`
	Entries []FileEntry `json:"entries"`
}

// apiError is every error's body.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// modeSpec is the spec's pattern of a written file's mode.
var modeSpec = regexp.MustCompile(`^0[0-7]{3}$`)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

// failed answers err of an operation on a path with the spec's status.
func failed(w http.ResponseWriter, err error) {
	var escape *escapeError
	switch {
	case errors.As(err, &escape):
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "path escapes the sandbox root")
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// A path through a file names nothing.
		writeError(w, http.StatusNotFound, "NOT_FOUND", "path does not exist within the sandbox")
	case errors.Is(err, fs.ErrPermission):
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "permission denied")
	case isEscape(err):
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "path escapes the sandbox root")
	default:
		writeError(w, http.StatusInternalServerError, "INTERNAL", err.Error())
	}
}

// escapeError is a path that leaves the root by its name alone.
type escapeError struct{ path string }

func (e *escapeError) Error() string { return fmt.Sprintf("%q escapes the sandbox root", e.path) }

// isEscape says whether os.Root refused a path for leaving the root (by a
// symlink on the way).
func isEscape(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// relPath is the sandbox-relative path of a request to /v1/files/{path}:
// decoded (a client may encode its slashes) and then as rel makes it.
func (s *Runtime) relPath(r *http.Request) (string, error) {
	raw := strings.TrimPrefix(r.URL.EscapedPath(), "/v1/files")
	p, err := url.PathUnescape(raw)
	if err != nil || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("bad path %q", raw)
	}
	return s.rel(strings.TrimPrefix(p, "/"))
}

// rel is a path of a request as the root's relative path, "." for the
// root itself: an absolute path under the root loses the root's prefix,
// any other is taken relative to the root (as agent-sandbox's reference
// runtime takes it); one that then leaves the root by ".." is an
// escapeError.
func (s *Runtime) rel(p string) (string, error) {
	if p == "" {
		return ".", nil
	}
	clean := path.Clean(p)
	if path.IsAbs(clean) {
		if clean == s.cfg.Root {
			return ".", nil
		}
		clean = strings.TrimPrefix(clean, strings.TrimSuffix(s.cfg.Root, "/")+"/")
		clean = path.Clean(strings.TrimPrefix(clean, "/"))
	}
	if clean == ".." || strings.HasPrefix(clean, "../") {
		return "", &escapeError{path: p}
	}
	return clean, nil
}

func (s *Runtime) files(w http.ResponseWriter, r *http.Request) {
	p, err := s.relPath(r)
	if err != nil {
		var escape *escapeError
		if errors.As(err, &escape) {
			failed(w, err)
			return
		}
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.read(w, r, p)
	case http.MethodPut:
		s.write(w, r, p)
	case http.MethodDelete:
		s.remove(w, r, p)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", r.Method+" is not served on /v1/files")
	}
}

func (s *Runtime) read(w http.ResponseWriter, r *http.Request, p string) {
	fi, err := s.root.Stat(p)
	if err != nil {
		failed(w, err)
		return
	}
	if fi.IsDir() {
		listing, err := s.list(p)
		if err != nil {
			failed(w, err)
			return
		}
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			return
		}
		writeJSON(w, http.StatusOK, listing)
		return
	}
	if !fi.Mode().IsRegular() {
		// A FIFO or a device would block the read, or never end.
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "not a regular file or a directory")
		return
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		w.WriteHeader(http.StatusOK)
		return
	}
	// Opened without blocking, and checked again: what p names may have
	// changed since the stat.
	f, err := s.root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		failed(w, err)
		return
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "not a regular file or a directory")
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.Header().Set("Last-Modified", fi.ModTime().UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, f)
}

// list is the listing of directory p, each entry as what it resolves to
// (the spec has no symlinks on the wire); entries that resolve outside the
// root, or to nothing, are left out.
func (s *Runtime) list(p string) (DirectoryListing, error) {
	d, err := s.root.Open(p)
	if err != nil {
		return DirectoryListing{}, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return DirectoryListing{}, err
	}
	sort.Strings(names)
	out := DirectoryListing{Path: p, Entries: []FileEntry{}}
	if p == "." {
		out.Path = ""
	}
	for _, name := range names {
		fi, err := s.root.Stat(path.Join(p, name))
		if err != nil {
			continue
		}
		e := FileEntry{Name: name, Size: fi.Size(), Type: "file",
			ModifiedAt: fi.ModTime().UTC().Format(time.RFC3339), Mode: fmt.Sprintf("%04o", fi.Mode().Perm())}
		if fi.IsDir() {
			e.Type = "directory"
		}
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

// write replaces p with the request's body (raw, or a multipart form's
// "file" part) at once: into a temporary file beside it, then renamed.
func (s *Runtime) write(w http.ResponseWriter, r *http.Request, p string) {
	mode := os.FileMode(0o644)
	if m := r.URL.Query().Get("mode"); m != "" {
		if !modeSpec.MatchString(m) {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("mode %q: want four octal digits from 0, as 0644", m))
			return
		}
		v, _ := strconv.ParseUint(m, 8, 32)
		mode = os.FileMode(v)
	}
	if p == "." {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "target path is a directory")
		return
	}
	if fi, err := s.root.Stat(p); err == nil && fi.IsDir() {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "target path is a directory")
		return
	}
	body, err := upload(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", err.Error())
		return
	}
	if dir := path.Dir(p); dir != "." {
		if err := s.root.MkdirAll(dir, 0o755); err != nil {
			if errors.Is(err, syscall.ENOTDIR) || errors.Is(err, fs.ErrExist) {
				writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", "a parent of the path is not a directory")
				return
			}
			failed(w, err)
			return
		}
	}
	tmp := path.Join(path.Dir(p), fmt.Sprintf(".%s.%d.tmp", path.Base(p), time.Now().UnixNano()))
	f, err := s.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		failed(w, err)
		return
	}
	_, err = io.Copy(f, body)
	if err == nil {
		err = f.Chmod(mode) // whatever the umask
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = s.root.Rename(tmp, p)
	}
	if err != nil {
		_ = s.root.Remove(tmp)
		failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// upload is the bytes a PUT carries.
func upload(r *http.Request) (io.Reader, error) {
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		return r.Body, nil
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if err != nil {
			return nil, errors.New(`a multipart body needs a "file" part`)
		}
		if part.FormName() == "file" {
			return part, nil
		}
	}
}

func (s *Runtime) remove(w http.ResponseWriter, r *http.Request, p string) {
	if p == "." {
		writeError(w, http.StatusForbidden, "PERMISSION_DENIED", "the sandbox root cannot be removed")
		return
	}
	recursive := false
	if v := r.URL.Query().Get("recursive"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "INVALID_ARGUMENT", fmt.Sprintf("recursive %q: want true or false", v))
			return
		}
		recursive = b
	}
	fi, err := s.root.Lstat(p)
	if err != nil {
		failed(w, err)
		return
	}
	if fi.IsDir() && !recursive {
		if d, err := s.root.Open(p); err == nil {
			names, _ := d.Readdirnames(1)
			d.Close()
			if len(names) > 0 {
				writeError(w, http.StatusConflict, "CONFLICT", "directory is not empty (recursive=true removes it whole)")
				return
			}
		}
	}
	if recursive {
		err = s.root.RemoveAll(p)
	} else {
		err = s.root.Remove(p)
	}
	if err != nil {
		failed(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// HealthResponse answers /v1/health.
type HealthResponse struct {
	Status        string `json:"status"`
	UptimeSeconds int64  `json:"uptime_seconds"`
}

func (s *Runtime) health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", r.Method+" is not served on /v1/health")
		return
	}
	if s.closing.Load() {
		writeError(w, http.StatusServiceUnavailable, "UNAVAILABLE", "the runtime is shutting down")
		return
	}
	writeJSON(w, http.StatusOK, HealthResponse{Status: "ok", UptimeSeconds: int64(time.Since(s.started).Seconds())})
}

// sensitive are parts of a variable's name that keep it off /v1/metadata
// whatever the orchestrator put there: untrusted code can read it.
var sensitive = []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CRED", "KEY", "AUTH", "PRIVATE", "CERT"}

func (s *Runtime) metadata(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, http.StatusMethodNotAllowed, "INVALID_ARGUMENT", r.Method+" is not served on /v1/metadata")
		return
	}
	env := map[string]string{}
	for k, v := range s.cfg.Metadata {
		up := strings.ToUpper(k)
		if !containsAny(up, sensitive) {
			env[k] = v
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Env map[string]string `json:"env"`
	}{env})
}

func containsAny(s string, parts []string) bool {
	for _, p := range parts {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}
