package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/bothy/bothy/api"
	"github.com/bothy/bothy/fsapi"
)

// target is the sandbox of the request, as the user ?user= names (by
// default the sandbox's own).
func target(c *echo.Context) fsapi.Target {
	return fsapi.Target{Owner: caller(c).ID, Sandbox: c.Param("id"), User: c.QueryParam("user")}
}

// getFile streams a file (a byte range of it with Range or ?offset=&length=),
// or lists a directory (?recursive=true&depth=N).
func (s *Server) getFile(c *echo.Context) error {
	q := c.Request().URL.Query()
	o := fsapi.ReadOptions{Path: q.Get("path"), Length: -1, Recursive: q.Get("recursive") == "true"}
	var err error
	if o.Depth, err = intParam(q.Get("depth"), 0, 1<<20); err != nil {
		return badRequest("depth: " + err.Error())
	}
	partial := false
	if rng := c.Request().Header.Get("Range"); rng != "" {
		if o.Offset, o.Length, err = parseRange(rng); err != nil {
			return newError(http.StatusRequestedRangeNotSatisfiable, api.CodeInvalidArgument, err.Error())
		}
		partial = true
	} else {
		off, err := intParam(q.Get("offset"), 0, 1<<62)
		if err != nil {
			return badRequest("offset: " + err.Error())
		}
		o.Offset = int64(off)
		if l := q.Get("length"); l != "" {
			n, err := intParam(l, 0, 1<<62)
			if err != nil {
				return badRequest("length: " + err.Error())
			}
			o.Length = int64(n)
		}
	}
	w := c.Response()
	list, err := s.deps.Files.Read(c.Request().Context(), target(c), o, func(f fsapi.FileInfo) (io.Writer, error) {
		hdr := w.Header()
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("Content-Length", strconv.FormatInt(f.Size, 10))
		hdr.Set("Last-Modified", f.MTime.UTC().Format(http.TimeFormat))
		hdr.Set("X-File-Mode", fmt.Sprintf("%04o", f.Mode))
		hdr.Set("Accept-Ranges", "bytes")
		status := http.StatusOK
		if partial {
			status = http.StatusPartialContent
			hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", o.Offset, o.Offset+f.Size-1))
		}
		w.WriteHeader(status)
		return w, nil
	})
	if err != nil {
		if r, _ := echo.UnwrapResponse(w); r != nil && r.Committed {
			s.log.Warn("file download broke off", "err", err, "sandbox_id", c.Param("id"))
			return nil
		}
		return err
	}
	if list != nil {
		return c.JSON(http.StatusOK, toDirList(list))
	}
	return nil
}

// putFile stores the raw body at ?path= atomically (?mode=0644&parents=true).
func (s *Server) putFile(c *echo.Context) error {
	q := c.Request().URL.Query()
	mode, err := modeParam(q.Get("mode"))
	if err != nil {
		return err
	}
	if c.Request().ContentLength > s.cfg.MaxFileBytes {
		return echo.ErrStatusRequestEntityTooLarge
	}
	body := &limitedBody{r: c.Request().Body, left: s.cfg.MaxFileBytes}
	info, err := s.deps.Files.Write(c.Request().Context(), target(c), q.Get("path"), mode, q.Get("parents") == "true", body)
	if body.over {
		return echo.ErrStatusRequestEntityTooLarge
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toFileInfo(info))
}

func (s *Server) deleteFile(c *echo.Context) error {
	q := c.Request().URL.Query()
	if err := s.deps.Files.Remove(c.Request().Context(), target(c), q.Get("path"), q.Get("recursive") == "true"); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) statFile(c *echo.Context) error {
	return fileInfoAnswer(c)(s.deps.Files.Stat(c.Request().Context(), target(c), c.QueryParam("path")))
}

func (s *Server) mkdir(c *echo.Context) error {
	var req api.MkdirRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	mode, err := modeParam(req.Mode)
	if err != nil {
		return err
	}
	return fileInfoAnswer(c)(s.deps.Files.Mkdir(c.Request().Context(), target(c), req.Path, mode, req.Parents == nil || *req.Parents))
}

func (s *Server) move(c *echo.Context) error {
	var req api.MoveRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	return fileInfoAnswer(c)(s.deps.Files.Move(c.Request().Context(), target(c), req.From, req.To, req.Overwrite))
}

func (s *Server) chmod(c *echo.Context) error {
	var req api.ChmodRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	if req.Mode == "" {
		return badRequest("mode: required, in octal (\"0644\")")
	}
	mode, err := modeParam(req.Mode)
	if err != nil {
		return err
	}
	return fileInfoAnswer(c)(s.deps.Files.Chmod(c.Request().Context(), target(c), req.Path, mode))
}

// fileInfoAnswer answers with a file's information, or the error.
func fileInfoAnswer(c *echo.Context) func(fsapi.FileInfo, error) error {
	return func(f fsapi.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, toFileInfo(f))
	}
}

// getArchive streams ?path= (a directory's contents, or a file) as a tar.
func (s *Server) getArchive(c *echo.Context) error {
	w := c.Response()
	err := s.deps.Files.ArchiveOut(c.Request().Context(), target(c), c.QueryParam("path"), func() (io.Writer, error) {
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		return w, nil
	})
	if err != nil {
		if r, _ := echo.UnwrapResponse(w); r != nil && r.Committed {
			s.log.Warn("archive download broke off", "err", err, "sandbox_id", c.Param("id"))
			return nil
		}
		return err
	}
	return nil
}

// putArchive extracts a tar (or tar.gz) body into the directory ?path=.
func (s *Server) putArchive(c *echo.Context) error {
	if c.Request().ContentLength > s.cfg.MaxFileBytes {
		return echo.ErrStatusRequestEntityTooLarge
	}
	body := &limitedBody{r: c.Request().Body, left: s.cfg.MaxFileBytes}
	path := c.QueryParam("path")
	res, err := s.deps.Files.ArchiveIn(c.Request().Context(), target(c), path, body)
	if body.over {
		return echo.ErrStatusRequestEntityTooLarge
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, api.ArchiveResult{Path: path, Files: res.Files, Bytes: res.Bytes})
}

// limitedBody reads at most left bytes of a request body, noting if there was
// more.
type limitedBody struct {
	r    io.Reader
	left int64
	over bool
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		// One more byte tells a body at the limit from one over it (which
		// the route's own bound may say first).
		var one [1]byte
		n, err := l.r.Read(one[:])
		var sc echo.HTTPStatusCoder
		switch {
		case n > 0 || errors.As(err, &sc) && sc.StatusCode() == http.StatusRequestEntityTooLarge:
			l.over = true
			return 0, echo.ErrStatusRequestEntityTooLarge
		case err == nil:
			return 0, nil
		}
		return 0, err
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func toFileInfo(f fsapi.FileInfo) api.FileInfo {
	return api.FileInfo{Name: f.Name, Path: f.Path, Type: string(f.Type), Size: f.Size,
		Mode: fmt.Sprintf("%04o", f.Mode), MTime: f.MTime, Target: f.Target, Owner: f.Owner, Group: f.Group}
}

func toDirList(res *fsapi.Listing) api.DirList {
	out := api.DirList{Dir: toFileInfo(res.Dir), Entries: make([]api.FileInfo, 0, len(res.Entries)), Truncated: res.Truncated}
	for _, e := range res.Entries {
		out.Entries = append(out.Entries, toFileInfo(e))
	}
	return out
}

// modeParam parses octal permission bits ("0644", "755"); "" is 0 (the default).
func modeParam(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, badRequest("mode: want octal permission bits such as \"0644\", got " + strconv.Quote(s))
	}
	return uint32(n), nil
}

func intParam(s string, lo, hi int) (int, error) {
	if s == "" {
		return lo, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("want a whole number from %d to %d", lo, hi)
	}
	return n, nil
}

// parseRange reads "bytes=N-M" or "bytes=N-" into an offset and a length
// (-1: to the end).
func parseRange(h string) (int64, int64, error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, 0, errors.New("the Range header: only one bytes=N-M range is supported")
	}
	a, b, ok := strings.Cut(spec, "-")
	start, err := strconv.ParseInt(a, 10, 64)
	if !ok || err != nil || start < 0 {
		return 0, 0, errors.New("the Range header: want bytes=N-M or bytes=N-")
	}
	if b == "" {
		return start, -1, nil
	}
	end, err := strconv.ParseInt(b, 10, 64)
	if err != nil || end < start {
		return 0, 0, errors.New("the Range header: want bytes=N-M with M >= N")
	}
	return start, end - start + 1, nil
}

// watchFiles streams file events under ?path= (?recursive=true), as NDJSON, or
// as server-sent events with Accept: text/event-stream. ?from=SEQ resumes after
// an event already seen.
func (s *Server) watchFiles(c *echo.Context) error {
	q := c.Request().URL.Query()
	o := fsapi.WatchOptions{Path: q.Get("path"), Recursive: q.Get("recursive") == "true"}
	if f := q.Get("from"); f != "" {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return badRequest("from: want a sequence number")
		}
		o.From = n
	}
	events := newEventStream(c)
	err := s.deps.Files.Watch(c.Request().Context(), target(c), o, func(e fsapi.Event) error {
		return events.send(e.Seq, e.Type, api.FileEvent{Seq: e.Seq, Type: e.Type, Path: e.Path, From: e.From, IsDir: e.IsDir, Time: e.Time})
	})
	if events.begun() {
		return nil // the stream ended (the client left, or the sandbox stopped)
	}
	return err
}
