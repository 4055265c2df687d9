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

	"github.com/bothy/bothy/agent/server"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bothy/bothy/api"
)

// remotePath splits "ID:PATH"; ok is false for a local path.
func remotePath(s string) (id, p string, ok bool) {
	id, p, ok = strings.Cut(s, ":")
	if !ok || id == "" || strings.Contains(id, "/") || p == "" {
		return "", "", false
	}
	return id, p, true
}

func cpCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "cp SRC DST",
		Short: "Copy files and directories into or out of a sandbox (ID:PATH)",
		Long: `Copy a file or a directory tree between this machine and a sandbox; one side is
ID:PATH. Directories follow cp -r: into an existing directory DST, SRC lands
as DST/NAME; a DST that does not exist becomes the copy. SRC ending in /.
copies the directory's contents into DST instead, and DST ending in / is a
directory (made when missing). Trees travel as one tar stream.`,
		Example: `  bothy cp ./project $ID:/work/          # makes /work/project
  bothy cp ./project $ID:/srv/app        # /srv/app is the copy (when it did not exist)
  bothy cp ./project/. $ID:/work         # the contents of ./project into /work
  bothy cp notes.txt $ID:/tmp/
  bothy cp $ID:/work/project/out ./out   # and back`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			src, dst := a[0], a[1]
			sid, spath, sremote := remotePath(src)
			did, dpath, dremote := remotePath(dst)
			switch {
			case !sremote && dremote:
				return upload(cmd.Context(), g.client(), src, did, dpath)
			case sremote && !dremote:
				return download(cmd.Context(), g.client(), sid, spath, dst)
			}
			return usageError{fmt.Errorf("cp: exactly one side must be ID:PATH")}
		},
	}
}

// contentsOnly reports a source written as DIR/. (copy what DIR holds).
func contentsOnly(p string) bool {
	return strings.HasSuffix(p, "/.") || p == "."
}

func upload(ctx context.Context, c *api.Client, local, id, remote string) error {
	fi, err := os.Stat(local)
	if err != nil {
		return err
	}
	rfi, rerr := c.Stat(ctx, id, remote)
	rexists := rerr == nil
	if rerr != nil && !api.IsNotFound(rerr) {
		return rerr
	}
	intoDir := rexists && rfi.Type == "dir" || !rexists && strings.HasSuffix(remote, "/")
	if !fi.IsDir() {
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		if intoDir {
			remote = path.Join(remote, filepath.Base(local))
		}
		p := newProgress("upload", fi.Size())
		defer p.done()
		_, err = c.WriteFile(ctx, id, remote, p.reader(f), api.WriteOptions{
			Mode: fmt.Sprintf("%04o", fi.Mode().Perm()), Parents: true, Size: fi.Size()})
		return err
	}
	switch {
	case rexists && rfi.Type != "dir":
		return fmt.Errorf("cp: cannot copy directory %s onto %s:%s, a %s", local, id, remote, rfi.Type)
	case intoDir && !contentsOnly(local):
		remote = path.Join(remote, filepath.Base(filepath.Clean(local)))
	}
	size := treeSize(local)
	pr, pw := io.Pipe()
	go func() {
		_, _, err := server.Archive(local, pw)
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
	lfi, lerr := os.Stat(local)
	lexists := lerr == nil
	intoDir := lexists && lfi.IsDir() || !lexists && strings.HasSuffix(local, string(filepath.Separator))
	if rfi.Type != "dir" {
		if intoDir {
			if err := os.MkdirAll(local, 0o755); err != nil {
				return err
			}
			local = filepath.Join(local, path.Base(remote))
		}
		tmp, err := os.CreateTemp(filepath.Dir(local), ".bothy-cp-*")
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
	switch {
	case lexists && !lfi.IsDir():
		return fmt.Errorf("cp: cannot copy directory %s:%s onto %s, a file", id, remote, local)
	case intoDir && !contentsOnly(remote):
		local = filepath.Join(local, path.Base(path.Clean(remote)))
	}
	if err := os.MkdirAll(local, 0o755); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	p := newProgress("download", -1)
	errc := make(chan error, 1)
	go func() {
		_, _, err := server.Extract(local, pr, 1<<40, 10_000_000)
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

func catCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "cat ID:PATH",
		Short:   "Print a file of a sandbox",
		Example: `  bothy cat $ID:/etc/os-release`,
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, p, ok := remotePath(a[0])
			if !ok {
				return usageError{fmt.Errorf("cat: want ID:PATH, got %q", a[0])}
			}
			_, err := g.client().ReadFile(cmd.Context(), id, p, out)
			return err
		},
	}
}

// listFiles lists a sandbox directory: bothy ls ID:PATH.
func listFiles(ctx context.Context, c *api.Client, id, p string, asJSON bool) error {
	list, err := c.ListDir(ctx, id, p, 1)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(list)
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
