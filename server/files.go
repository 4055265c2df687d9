package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v5"

	"github.com/sandboxd/sandboxd/agent"
	"github.com/sandboxd/sandboxd/api"
	"github.com/sandboxd/sandboxd/orchestrator"
)

// fsCall runs one file operation in the caller's sandbox, as the sandbox's user
// unless ?user= names another.
func (s *Server) fsCall(c *echo.Context, req agent.FsRequest, in io.Reader, sink func(agent.FsResult) (io.Writer, error)) (agent.FsResult, error) {
	if err := agent.CheckPath(req.Path); err != nil {
		return agent.FsResult{}, badRequest("path: " + err.Error())
	}
	if req.Op == "move" {
		if err := agent.CheckPath(req.To); err != nil {
			return agent.FsResult{}, badRequest("to: " + err.Error())
		}
	}
	var res agent.FsResult
	err := s.deps.Orchestrator.Attach(c.Request().Context(), caller(c).ID, c.Param("id"),
		func(ctx context.Context, sb orchestrator.Sandbox, conn *agent.Conn) error {
			req.User = c.QueryParam("user")
			if req.User == "" {
				req.User = sb.Spec.User
			}
			var err error
			res, err = conn.Fs(ctx, req, in, sink)
			return err
		})
	return res, err
}

// getFile streams a file (a byte range of it with Range or ?offset=&length=),
// or lists a directory (?recursive=true&depth=N).
func (s *Server) getFile(c *echo.Context) error {
	q := c.Request().URL.Query()
	req := agent.FsRequest{Op: "read", Path: q.Get("path"), Length: -1, Recursive: q.Get("recursive") == "true"}
	var err error
	if req.Depth, err = intParam(q.Get("depth"), 0, 1<<20); err != nil {
		return badRequest("depth: " + err.Error())
	}
	partial := false
	if rng := c.Request().Header.Get("Range"); rng != "" {
		if req.Offset, req.Length, err = parseRange(rng); err != nil {
			return newError(http.StatusRequestedRangeNotSatisfiable, api.CodeInvalidArgument, err.Error())
		}
		partial = true
	} else {
		off, err := intParam(q.Get("offset"), 0, 1<<62)
		if err != nil {
			return badRequest("offset: " + err.Error())
		}
		req.Offset = int64(off)
		if l := q.Get("length"); l != "" {
			n, err := intParam(l, 0, 1<<62)
			if err != nil {
				return badRequest("length: " + err.Error())
			}
			req.Length = int64(n)
		}
	}
	w := c.Response()
	res, err := s.fsCall(c, req, nil, func(h agent.FsResult) (io.Writer, error) {
		hdr := w.Header()
		hdr.Set("Content-Type", "application/octet-stream")
		hdr.Set("Content-Length", strconv.FormatInt(h.Info.Size, 10))
		hdr.Set("Last-Modified", h.Info.MTime.UTC().Format(http.TimeFormat))
		hdr.Set("X-File-Mode", fmt.Sprintf("%04o", h.Info.Mode))
		hdr.Set("Accept-Ranges", "bytes")
		status := http.StatusOK
		if partial {
			status = http.StatusPartialContent
			hdr.Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", req.Offset, req.Offset+h.Info.Size-1))
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
	if res.Info != nil && res.Info.Type == "dir" {
		return c.JSON(http.StatusOK, toDirList(res))
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
	res, err := s.fsCall(c, agent.FsRequest{Op: "write", Path: q.Get("path"), Mode: mode,
		Parents: q.Get("parents") == "true", MaxBytes: s.cfg.MaxFileBytes}, body, nil)
	if body.over {
		return echo.ErrStatusRequestEntityTooLarge
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toFileInfo(*res.Info))
}

func (s *Server) deleteFile(c *echo.Context) error {
	q := c.Request().URL.Query()
	if _, err := s.fsCall(c, agent.FsRequest{Op: "remove", Path: q.Get("path"), Recursive: q.Get("recursive") == "true"}, nil, nil); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) statFile(c *echo.Context) error {
	res, err := s.fsCall(c, agent.FsRequest{Op: "stat", Path: c.QueryParam("path")}, nil, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toFileInfo(*res.Info))
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
	res, err := s.fsCall(c, agent.FsRequest{Op: "mkdir", Path: req.Path, Mode: mode, Parents: req.Parents == nil || *req.Parents}, nil, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toFileInfo(*res.Info))
}

func (s *Server) move(c *echo.Context) error {
	var req api.MoveRequest
	if err := bind(c, &req, false); err != nil {
		return err
	}
	res, err := s.fsCall(c, agent.FsRequest{Op: "move", Path: req.From, To: req.To, Overwrite: req.Overwrite}, nil, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toFileInfo(*res.Info))
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
	res, err := s.fsCall(c, agent.FsRequest{Op: "chmod", Path: req.Path, Mode: mode}, nil, nil)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toFileInfo(*res.Info))
}

// getArchive streams ?path= (a directory's contents, or a file) as a tar.
func (s *Server) getArchive(c *echo.Context) error {
	w := c.Response()
	_, err := s.fsCall(c, agent.FsRequest{Op: "tar_out", Path: c.QueryParam("path")}, nil, func(agent.FsResult) (io.Writer, error) {
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
	res, err := s.fsCall(c, agent.FsRequest{Op: "tar_in", Path: path, MaxBytes: s.cfg.MaxExtractBytes}, body, nil)
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
		var one [1]byte
		if n, _ := l.r.Read(one[:]); n > 0 {
			l.over = true
			return 0, errors.New("request body over the limit")
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func toFileInfo(f agent.FileInfo) api.FileInfo {
	return api.FileInfo{Name: f.Name, Path: f.Path, Type: f.Type, Size: f.Size,
		Mode: fmt.Sprintf("%04o", f.Mode), MTime: f.MTime, Target: f.Target}
}

func toDirList(res agent.FsResult) api.DirList {
	out := api.DirList{Dir: toFileInfo(*res.Info), Entries: make([]api.FileInfo, 0, len(res.Entries)), Truncated: res.Truncated}
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
	path := q.Get("path")
	if err := agent.CheckPath(path); err != nil {
		return badRequest("path: " + err.Error())
	}
	var from uint64
	if f := q.Get("from"); f != "" {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return badRequest("from: want a sequence number")
		}
		from = n
	}
	sse := strings.Contains(c.Request().Header.Get("Accept"), "text/event-stream")
	w := c.Response()
	started := false
	err := s.deps.Orchestrator.Attach(c.Request().Context(), caller(c).ID, c.Param("id"),
		func(ctx context.Context, _ orchestrator.Sandbox, conn *agent.Conn) error {
			return conn.Watch(ctx, agent.WatchRequest{Path: path, Recursive: q.Get("recursive") == "true", From: from},
				func(e agent.WatchEvent) error {
					if !started {
						if sse {
							w.Header().Set("Content-Type", "text/event-stream")
						} else {
							w.Header().Set("Content-Type", "application/x-ndjson")
						}
						w.Header().Set("Cache-Control", "no-store")
						w.WriteHeader(http.StatusOK)
						started = true
					}
					b, _ := json.Marshal(api.FileEvent{Seq: e.Seq, Type: e.Type, Path: e.Path, From: e.From, IsDir: e.IsDir, Time: e.Time})
					var err error
					if sse {
						_, err = fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, b)
					} else {
						_, err = fmt.Fprintf(w, "%s\n", b)
					}
					if f, ok := w.(http.Flusher); ok {
						f.Flush()
					}
					return err
				})
		})
	if started {
		return nil // the stream ended (the client left, or the sandbox stopped)
	}
	return err
}
