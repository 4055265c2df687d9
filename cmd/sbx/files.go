package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/sandboxd/sandboxd/agent"
	"github.com/sandboxd/sandboxd/api"
)

// remotePath splits "ID:PATH"; ok is false for a local path.
func remotePath(s string) (id, p string, ok bool) {
	id, p, ok = strings.Cut(s, ":")
	if !ok || id == "" || strings.Contains(id, "/") || p == "" {
		return "", "", false
	}
	return id, p, true
}

// runCopy copies files and directories (recursively) between this machine and
// a sandbox: sbx cp LOCAL ID:PATH, or sbx cp ID:PATH LOCAL. A directory's
// contents land in the destination directory.
func runCopy(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("cp")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("usage: sbx cp LOCAL ID:PATH | sbx cp ID:PATH LOCAL")
	}
	src, dst := fs.Arg(0), fs.Arg(1)
	sid, spath, sremote := remotePath(src)
	did, dpath, dremote := remotePath(dst)
	switch {
	case !sremote && dremote:
		return upload(ctx, c, src, did, dpath)
	case sremote && !dremote:
		return download(ctx, c, sid, spath, dst)
	}
	return fmt.Errorf("cp: exactly one side must be ID:PATH")
}

func upload(ctx context.Context, c *api.Client, local, id, remote string) error {
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		if rfi, err := c.Stat(ctx, id, remote); err == nil && rfi.Type == "dir" {
			remote = path.Join(remote, filepath.Base(local))
		}
		p := newProgress("upload", fi.Size())
		defer p.done()
		_, err = c.WriteFile(ctx, id, remote, p.reader(f), api.WriteOptions{
			Mode: fmt.Sprintf("%04o", fi.Mode().Perm()), Parents: true, Size: fi.Size()})
		return err
	}
	size := treeSize(local)
	pr, pw := io.Pipe()
	go func() {
		_, _, err := agent.Archive(local, pw)
		pw.CloseWithError(err)
	}()
	p := newProgress("upload", size)
	defer p.done()
	_, err = c.UploadArchive(ctx, id, remote, p.reader(pr))
	pr.CloseWithError(err)
	return err
}

func download(ctx context.Context, c *api.Client, id, remote, local string) error {
	rfi, err := c.Stat(ctx, id, remote)
	if err != nil {
		return err
	}
	if rfi.Type != "dir" {
		if lfi, err := os.Stat(local); err == nil && lfi.IsDir() {
			local = filepath.Join(local, path.Base(remote))
		}
		tmp, err := os.CreateTemp(filepath.Dir(local), ".sbx-cp-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		p := newProgress("download", rfi.Size)
		_, err = c.ReadFile(ctx, id, remote, p.writer(tmp))
		p.done()
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		var mode uint32
		fmt.Sscanf(rfi.Mode, "%o", &mode)
		_ = os.Chmod(tmp.Name(), fs.FileMode(mode).Perm())
		return os.Rename(tmp.Name(), local)
	}
	pr, pw := io.Pipe()
	p := newProgress("download", -1)
	errc := make(chan error, 1)
	go func() {
		_, _, err := agent.Extract(local, pr, 1<<40, 10_000_000)
		pr.CloseWithError(err)
		errc <- err
	}()
	_, err = c.DownloadArchive(ctx, id, remote, p.writer(pw))
	pw.CloseWithError(err)
	p.done()
	if xerr := <-errc; err == nil {
		err = xerr
	}
	return err
}

func treeSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size() + 512
			}
		}
		return nil
	})
	return n
}

// progress draws a one-line progress bar on a terminal's stderr for transfers
// over 1 MiB; elsewhere it is silent.
type progress struct {
	label string
	total int64
	n     int64
	start time.Time
	last  time.Time
	on    bool
}

func newProgress(label string, total int64) *progress {
	f, ok := errOut.(*os.File)
	on := ok && term.IsTerminal(int(f.Fd())) && (total < 0 || total > 1<<20)
	return &progress{label: label, total: total, start: time.Now(), on: on}
}

func (p *progress) add(n int) {
	p.n += int64(n)
	if !p.on || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.draw()
}

func (p *progress) draw() {
	rate := float64(p.n) / 1e6 / max(time.Since(p.start).Seconds(), 1e-3)
	if p.total > 0 {
		pct := min(100*float64(p.n)/float64(p.total), 100)
		bar := strings.Repeat("#", int(pct/5)) + strings.Repeat(".", 20-int(pct/5))
		fmt.Fprintf(errOut, "\r%s [%s] %3.0f%%  %.1f / %.1f MB  %.0f MB/s ", p.label, bar, pct, float64(p.n)/1e6, float64(p.total)/1e6, rate)
		return
	}
	fmt.Fprintf(errOut, "\r%s %.1f MB  %.0f MB/s ", p.label, float64(p.n)/1e6, rate)
}

func (p *progress) done() {
	if p.on {
		p.draw()
		fmt.Fprintln(errOut)
	}
}

func (p *progress) reader(r io.Reader) io.Reader { return &countingReader{r: r, p: p} }
func (p *progress) writer(w io.Writer) io.Writer { return &countingWriter{w: w, p: p} }

type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.add(n)
	return n, err
}

type countingWriter struct {
	w io.Writer
	p *progress
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.p.add(n)
	return n, err
}

// runCat writes a sandbox's file to standard output.
func runCat(ctx context.Context, c *api.Client, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("usage: sbx cat ID:PATH")
	}
	id, p, ok := remotePath(args[0])
	if !ok {
		return fmt.Errorf("cat: want ID:PATH, got %q", args[0])
	}
	_, err := c.ReadFile(ctx, id, p, out)
	return err
}

// listFiles lists a sandbox directory: sbx ls ID:PATH.
func listFiles(ctx context.Context, c *api.Client, id, p string) error {
	list, err := c.ListDir(ctx, id, p, 1)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, e := range list.Entries {
		name := e.Name
		switch e.Type {
		case "dir":
			name += "/"
		case "symlink":
			name += " -> " + e.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Type, e.Mode, e.Size, e.MTime.Local().Format("2006-01-02 15:04"), name)
	}
	return tw.Flush()
}
