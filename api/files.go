package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

func (c *Client) filesURL(id, route, path string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	q.Set("path", path)
	return "/v1/sandboxes/" + url.PathEscape(id) + route + "?" + q.Encode()
}

// ReadFile streams a file of a sandbox into w and returns its size.
func (c *Client) ReadFile(ctx context.Context, id, path string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, c.filesURL(id, "/files", path, nil), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		return 0, &Error{Code: CodeConflict, Message: path + " is a directory", Status: http.StatusConflict}
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("read %s: got %d of %d bytes", path, n, resp.ContentLength)
	}
	return n, err
}

// WriteOptions tune WriteFile.
type WriteOptions struct {
	Mode    string // octal, "0644"; empty keeps an existing file's mode
	Parents bool   // create missing parent directories
	// Size, when known (>= 0), is sent as the Content-Length.
	Size int64
}

// WriteFile stores r at path in a sandbox, atomically.
func (c *Client) WriteFile(ctx context.Context, id, path string, r io.Reader, o WriteOptions) (FileInfo, error) {
	q := url.Values{}
	if o.Mode != "" {
		q.Set("mode", o.Mode)
	}
	if o.Parents {
		q.Set("parents", "true")
	}
	var fi FileInfo
	err := c.stream(ctx, http.MethodPut, c.filesURL(id, "/files", path, q), r, o.Size, &fi)
	return fi, err
}

// ListDir lists a directory (recursive down to depth levels when depth > 1).
func (c *Client) ListDir(ctx context.Context, id, path string, depth int) (DirList, error) {
	q := url.Values{}
	if depth > 1 {
		q.Set("recursive", "true")
		q.Set("depth", strconv.Itoa(depth))
	}
	var out DirList
	err := c.do(ctx, http.MethodGet, c.filesURL(id, "/files", path, q), nil, nil, &out)
	return out, err
}

// Stat describes a path (a symlink itself, not its target).
func (c *Client) Stat(ctx context.Context, id, path string) (FileInfo, error) {
	var fi FileInfo
	err := c.do(ctx, http.MethodGet, c.filesURL(id, "/files/stat", path, nil), nil, nil, &fi)
	return fi, err
}

// Remove deletes a path (a directory and its contents when recursive).
func (c *Client) Remove(ctx context.Context, id, path string, recursive bool) error {
	q := url.Values{}
	if recursive {
		q.Set("recursive", "true")
	}
	return c.do(ctx, http.MethodDelete, c.filesURL(id, "/files", path, q), nil, nil, nil)
}

// Mkdir makes a directory and its missing parents.
func (c *Client) Mkdir(ctx context.Context, id, path, mode string) (FileInfo, error) {
	var fi FileInfo
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/files/mkdir", nil, MkdirRequest{Path: path, Mode: mode}, &fi)
	return fi, err
}

// Move renames a path.
func (c *Client) Move(ctx context.Context, id, from, to string, overwrite bool) (FileInfo, error) {
	var fi FileInfo
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/files/move", nil, MoveRequest{From: from, To: to, Overwrite: overwrite}, &fi)
	return fi, err
}

// Chmod changes a path's permission bits.
func (c *Client) Chmod(ctx context.Context, id, path, mode string) (FileInfo, error) {
	var fi FileInfo
	err := c.do(ctx, http.MethodPost, "/v1/sandboxes/"+url.PathEscape(id)+"/files/chmod", nil, ChmodRequest{Path: path, Mode: mode}, &fi)
	return fi, err
}

// DownloadArchive streams path (a directory's contents, or one file) as a tar
// into w.
func (c *Client) DownloadArchive(ctx context.Context, id, path string, w io.Writer) (int64, error) {
	resp, err := c.send(ctx, http.MethodGet, c.filesURL(id, "/archive", path, nil), nil, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return io.Copy(w, resp.Body)
}

// UploadArchive extracts a tar (or tar.gz) stream into the directory path.
func (c *Client) UploadArchive(ctx context.Context, id, path string, r io.Reader) (ArchiveResult, error) {
	var out ArchiveResult
	err := c.stream(ctx, http.MethodPut, c.filesURL(id, "/archive", path, nil), r, -1, &out)
	return out, err
}

// stream sends r as a raw request body and decodes the JSON answer.
func (c *Client) stream(ctx context.Context, method, path string, r io.Reader, size int64, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, r)
	if err != nil {
		return err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		return decodeError(resp)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// WatchFiles streams file events under path (and below it when recursive) to
// fn, resuming after sequence number from when it is not 0, until ctx is done
// or fn returns an error. A "gap" event means events after from were lost.
func (c *Client) WatchFiles(ctx context.Context, id, path string, recursive bool, from uint64, fn func(FileEvent) error) error {
	q := url.Values{}
	if recursive {
		q.Set("recursive", "true")
	}
	if from > 0 {
		q.Set("from", strconv.FormatUint(from, 10))
	}
	resp, err := c.send(ctx, http.MethodGet, c.filesURL(id, "/files/watch", path, q), nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e FileEvent
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}
