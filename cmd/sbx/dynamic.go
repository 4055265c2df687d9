package main

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sandboxd/sandboxd/api"
)

// runtimes maps a file extension to the runtime that runs it.
var runtimes = map[string]string{".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node", ".sh": "bash", ".bash": "bash"}

// runRun is `sbx run RUNTIME -c CODE` or `sbx run FILE`: the code runs in a
// warm runner, its output is printed, and sbx exits with its exit code.
func runRun(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("run")
	code := fs.String("c", "", "the code to run (else a file, or - for standard input)")
	timeout := fs.Duration("timeout", 0, "wall-clock limit (default 10s)")
	memory := fs.Int64("memory", 0, "memory limit in MiB (default 256)")
	ephemeral := fs.Bool("ephemeral", false, "run in a runner used once, then destroyed")
	stdinFile := fs.String("stdin", "", "a file to give the code as standard input")
	env := kvFlag{}
	fs.Var(env, "env", "KEY=VALUE for the run's environment (repeatable)")
	var files multiFlag
	fs.Var(&files, "file", "a local file to put in the run's directory (repeatable)")
	if err := parseInterleaved(fs, args); err != nil {
		return err
	}
	req := api.RunRequest{Code: *code, Env: env, TimeoutMs: timeout.Milliseconds(), MemoryMB: *memory}
	if *ephemeral {
		req.Mode = "ephemeral"
	}
	switch {
	case *code != "" && fs.NArg() == 1:
		req.Runtime = fs.Arg(0)
	case *code == "" && fs.NArg() == 1:
		p := fs.Arg(0)
		rt, ok := runtimes[strings.ToLower(filepath.Ext(p))]
		if !ok {
			return fmt.Errorf("run: cannot tell the runtime of %s from its extension (.py, .js, .sh); use sbx run RUNTIME -c CODE", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		req.Runtime, req.Code = rt, string(b)
	case *code == "" && fs.NArg() == 2 && fs.Arg(1) == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return err
		}
		req.Runtime, req.Code = fs.Arg(0), string(b)
	default:
		return errors.New("run: want sbx run RUNTIME -c CODE, sbx run RUNTIME - (code on standard input) or sbx run FILE")
	}
	if *stdinFile != "" {
		b, err := os.ReadFile(*stdinFile)
		if err != nil {
			return err
		}
		req.Stdin = string(b)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		req.Files = append(req.Files, api.RunFile{Path: filepath.Base(p), Content: base64.StdEncoding.EncodeToString(b), Encoding: "base64"})
	}
	res, err := c.Run(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprint(out, res.Stdout)
	fmt.Fprint(errOut, res.Stderr)
	var notes []string
	if res.TimedOut {
		notes = append(notes, "timed out")
	}
	if res.OOM {
		notes = append(notes, "killed: out of memory")
	}
	if res.Truncated {
		notes = append(notes, "output truncated")
	}
	if res.Leftover {
		notes = append(notes, "left processes behind (killed)")
	}
	for _, f := range res.Files {
		notes = append(notes, "made "+f.Path)
	}
	if len(notes) > 0 {
		fmt.Fprintf(errOut, "sbx: %s (%.1f ms)\n", strings.Join(notes, ", "), res.DurationMs)
	}
	if res.ExitCode != 0 {
		return exitError{res.ExitCode}
	}
	return nil
}

// runApps is `sbx apps deploy|invoke|logs|ls|rm`.
func runApps(ctx context.Context, c *api.Client, args []string) error {
	if len(args) == 0 {
		return errors.New("apps: want deploy, invoke, logs, ls, get or rm")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "deploy":
		fs := newFlags("apps deploy")
		rt := fs.String("runtime", "", "python or node (default: from the file's extension)")
		timeout := fs.Duration("timeout", 0, "per-request limit (default 10s)")
		rate := fs.Float64("rate", 0, "requests per second (default: the server's)")
		burst := fs.Int("burst", 0, "burst of --rate")
		storage := fs.Int64("storage", 0, "storage quota in bytes (default 64 MiB)")
		env := kvFlag{}
		fs.Var(env, "env", "KEY=VALUE the app sees in env (repeatable)")
		if err := parseInterleaved(fs, args); err != nil {
			return err
		}
		if err := needArgs(fs, 2, "NAME FILE"); err != nil {
			return err
		}
		b, err := os.ReadFile(fs.Arg(1))
		if err != nil {
			return err
		}
		if *rt == "" {
			*rt = runtimes[strings.ToLower(filepath.Ext(fs.Arg(1)))]
		}
		app, err := c.DeployApp(ctx, fs.Arg(0), api.DeployAppRequest{Runtime: *rt, Code: string(b), Env: env,
			Limits: api.AppLimits{TimeoutMs: timeout.Milliseconds(), RatePerSec: *rate, Burst: *burst, StorageBytes: *storage}})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s version %d (%s)\n", app.Name, app.Version, app.Runtime)
		return nil
	case "invoke":
		fs := newFlags("apps invoke")
		method := fs.String("X", "GET", "HTTP method")
		data := fs.String("d", "", "request body (@FILE reads a file)")
		var headers multiFlag
		fs.Var(&headers, "H", "header 'Name: value' (repeatable)")
		verbose := fs.Bool("i", false, "print the status and headers too")
		if err := parseInterleaved(fs, args); err != nil {
			return err
		}
		if err := needArgs(fs, 1, "NAME"); err != nil {
			return err
		}
		path := "/"
		if fs.NArg() > 1 {
			path = fs.Arg(1)
		}
		var body io.Reader
		if *data != "" {
			if name, ok := strings.CutPrefix(*data, "@"); ok {
				f, err := os.Open(name)
				if err != nil {
					return err
				}
				defer f.Close()
				body = f
			} else {
				body = strings.NewReader(*data)
			}
			if *method == "GET" {
				*method = "POST"
			}
		}
		hdr := http.Header{}
		for _, h := range headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok {
				return fmt.Errorf("apps invoke: header %q is not Name: value", h)
			}
			hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		resp, err := c.Invoke(ctx, fs.Arg(0), *method, path, body, hdr)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if *verbose {
			fmt.Fprintf(out, "HTTP %d\n", resp.StatusCode)
			for k, v := range resp.Header {
				fmt.Fprintf(out, "%s: %s\n", k, strings.Join(v, ", "))
			}
			fmt.Fprintln(out)
		}
		if _, err := io.Copy(out, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode >= 400 {
			return exitError{1}
		}
		return nil
	case "logs":
		fs := newFlags("apps logs")
		n := fs.Int("n", 20, "entries to show, newest last")
		if err := parseInterleaved(fs, args); err != nil {
			return err
		}
		if err := needArgs(fs, 1, "NAME"); err != nil {
			return err
		}
		logs, err := c.AppLogs(ctx, fs.Arg(0), *n)
		if err != nil {
			return err
		}
		for i := len(logs.Entries) - 1; i >= 0; i-- {
			e := logs.Entries[i]
			fmt.Fprintf(out, "%s %d %.1fms cpu=%.1fms rows=%d/%d in=%dB out=%dB %s\n", e.Time.Local().Format(time.DateTime),
				e.Status, e.DurationMs, e.CPUMs, e.RowsRead, e.RowsWritten, e.BytesIn, e.BytesOut, e.Error)
			if e.Output != "" {
				for _, line := range strings.Split(strings.TrimRight(e.Output, "\n"), "\n") {
					fmt.Fprintln(out, "  | "+line)
				}
			}
		}
		return nil
	case "ls":
		apps, err := c.ListApps(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tRUNTIME\tVERSION\tSTORAGE\tUPDATED")
		for _, a := range apps.Apps {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", a.Name, a.Runtime, a.Version, a.StorageBytes, a.UpdatedAt.Local().Format(time.DateTime))
		}
		return tw.Flush()
	case "get":
		if len(args) != 1 {
			return errors.New("apps get: want NAME")
		}
		app, err := c.GetApp(ctx, args[0])
		if err != nil {
			return err
		}
		return printJSON(app)
	case "rm":
		for _, name := range args {
			if err := c.DeleteApp(ctx, name); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("apps: unknown subcommand %q", sub)
}

// runUsage is `sbx usage [--since DURATION]`.
func runUsage(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("usage")
	since := fs.Duration("since", 24*time.Hour, "how far back")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	u, err := c.Usage(ctx, time.Now().Add(-*since))
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(u)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOUR\tKIND\tAPP\tREQUESTS\tERRORS\tDURATION_MS\tCPU_MS\tROWS_READ\tROWS_WRITTEN\tBYTES_IN\tBYTES_OUT")
	for _, r := range u.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.0f\t%.0f\t%d\t%d\t%d\t%d\n", r.Hour.Local().Format("2006-01-02 15:00"), r.Kind, r.App,
			r.Requests, r.Errors, r.DurationMs, r.CPUMs, r.RowsRead, r.RowsWritten, r.BytesIn, r.BytesOut)
	}
	return tw.Flush()
}

// parseInterleaved parses flags that may come after positional arguments
// (sbx run python -c CODE), keeping the positional ones in order.
func parseInterleaved(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(s string) error {
	*m = append(*m, s)
	return nil
}
