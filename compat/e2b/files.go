package e2b

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"strconv"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/bothy/bothy/fsapi"
)

// fileError writes a /files error as envd does.
func (s *Service) fileError(w http.ResponseWriter, r *http.Request, p string, err error) {
	var sc interface{ StatusCode() int }
	switch {
	case cerrdefs.IsNotFound(err):
		writeError(w, http.StatusNotFound, fmt.Sprintf("path '%s' does not exist", p))
	case errors.Is(err, fsapi.ErrNoSpace):
		writeError(w, http.StatusInsufficientStorage, err.Error())
	case errors.Is(err, fsapi.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.As(err, &sc) && sc.StatusCode() == http.StatusRequestEntityTooLarge:
		// The upload went past the route's limit.
		writeError(w, http.StatusRequestEntityTooLarge, "the upload is larger than the limit")
	default:
		s.fail(w, r, err)
	}
}

// readFile answers a file's bytes (GET /files?path=).
func (s *Service) readFile(w http.ResponseWriter, r *http.Request) {
	t := targetOf(r.Context())
	p := inHome(r.URL.Query().Get("path"))
	written := false
	l, err := s.d.Files.Read(r.Context(), t.files(), fsapi.ReadOptions{Path: p, Length: -1}, func(fi fsapi.FileInfo) (io.Writer, error) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": path.Base(fi.Path)}))
		h.Set("Content-Length", strconv.FormatInt(fi.Size, 10))
		w.WriteHeader(http.StatusOK)
		written = true
		return w, nil
	})
	switch {
	case err != nil && !written:
		s.fileError(w, r, p, err)
	case err != nil:
		s.log.Debug("e2b file read cut off", "path", p, "err", err)
	case l != nil:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("path '%s' is a directory", p))
	}
}

// uploaded is one file of an upload's answer.
type uploaded struct {
	Name string `json:"name"`
	Path string `json:"path"`
	Type string `json:"type"`
}

// writeFiles stores uploaded files (POST /files): the parts named "file" of
// a multipart form, each at ?path= or, without it, at the part's raw file
// name (a full path); or the raw body at ?path=.
func (s *Service) writeFiles(w http.ResponseWriter, r *http.Request) {
	t := targetOf(r.Context())
	q := r.URL.Query().Get("path")
	var out []uploaded
	store := func(dest string, body io.Reader) bool {
		fi, err := s.d.Files.Write(r.Context(), t.files(), dest, 0o644, true, body)
		if err != nil {
			s.fileError(w, r, dest, err)
			return false
		}
		out = append(out, uploaded{Name: path.Base(fi.Path), Path: fi.Path, Type: "file"})
		return true
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != "multipart/form-data" {
		if q == "" {
			writeError(w, http.StatusBadRequest, "path is required for a raw upload")
			return
		}
		if store(inHome(q), r.Body) {
			writeJSON(w, http.StatusOK, out)
		}
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		writeError(w, http.StatusBadRequest, "not a multipart form: "+err.Error())
		return
	}
	seen := map[string]bool{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, "a broken multipart form: "+err.Error())
			return
		}
		if part.FormName() != "file" {
			continue
		}
		dest := q
		if dest == "" {
			// The raw file name: Part.FileName would keep only its base.
			_, params, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
			dest = params["filename"]
		}
		if dest == "" {
			writeError(w, http.StatusBadRequest, "a file part without a path or a file name")
			return
		}
		dest = inHome(dest)
		if seen[dest] {
			writeError(w, http.StatusBadRequest, "the same path twice in one upload: "+dest)
			return
		}
		seen[dest] = true
		if !store(dest, part) {
			return
		}
	}
	if out == nil {
		out = []uploaded{}
	}
	writeJSON(w, http.StatusOK, out)
}
