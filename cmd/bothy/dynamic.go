package main

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bothy/bothy/api"
)

// runtimes maps a file extension to the runtime that runs it.
var runtimes = map[string]string{".py": "python", ".js": "node", ".mjs": "node", ".cjs": "node", ".sh": "bash", ".bash": "bash"}

// runCmd is `bothy run RUNTIME -c CODE` or `bothy run FILE`: the code runs in a
// warm runner, its output is printed, and bothy exits with its exit code.
func runCmd(g *cli) *cobra.Command {
	var code, stdinFile string
	var timeout time.Duration
	var memory int64
	var ephemeral, asJSON bool
	var env, files []string
	cmd := &cobra.Command{
		Use:   "run RUNTIME -c CODE | run RUNTIME - | run FILE",
		Short: "Run code in a warm, locked-down runner (python, node, bash)",
		Long: `Run a short piece of code in a pre-warmed runner with no network, and print its
output; bothy exits with its exit code. The runtime is python, node or bash, or
comes from FILE's extension (.py, .js, .sh).`,
		Example: `  bothy run python -c 'print(6*7)'
  bothy run script.js
  echo 'echo hi' | bothy run bash -
  bothy run analyze.py --file data.csv --timeout 30s --memory 512
  bothy run python -c 'print(1)' --json`,
		Args: args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			envm, err := keyValues("env", env)
			if err != nil {
				return err
			}
			req := api.RunRequest{Code: code, Env: envm, TimeoutMs: timeout.Milliseconds(), MemoryMB: memory}
			if ephemeral {
				req.Mode = "ephemeral"
			}
			switch {
			case code != "" && len(a) == 1:
				req.Runtime = a[0]
			case code == "" && len(a) == 1:
				rt, ok := runtimes[strings.ToLower(filepath.Ext(a[0]))]
				if !ok {
					return usageError{fmt.Errorf("run: cannot tell the runtime of %s from its extension (.py, .js, .sh); use bothy run RUNTIME -c CODE", a[0])}
				}
				b, err := os.ReadFile(a[0])
				if err != nil {
					return err
				}
				req.Runtime, req.Code = rt, string(b)
			case code == "" && len(a) == 2 && a[1] == "-":
				b, err := io.ReadAll(os.Stdin)
				if err != nil {
					return err
				}
				req.Runtime, req.Code = a[0], string(b)
			default:
				return usageError{fmt.Errorf("run: want bothy run RUNTIME -c CODE, bothy run RUNTIME - (code on standard input) or bothy run FILE")}
			}
			if stdinFile != "" {
				b, err := os.ReadFile(stdinFile)
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
			c, ctx := g.client(), cmd.Context()
			if asJSON {
				res, err := c.Run(ctx, req)
				if err != nil {
					return err
				}
				if err := printJSON(res); err != nil {
					return err
				}
				if res.ExitCode != 0 {
					return exitError{res.ExitCode}
				}
				return nil
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
				fmt.Fprintf(errOut, "bothy: %s (%.1f ms)\n", strings.Join(notes, ", "), res.DurationMs)
			}
			if res.ExitCode != 0 {
				return exitError{res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&code, "code", "c", "", "the code to run (else a file, or - for standard input)")
	f.DurationVar(&timeout, "timeout", 0, "wall-clock limit (default 10s)")
	f.Int64Var(&memory, "memory", 0, "memory limit in MiB (default 256)")
	f.BoolVar(&ephemeral, "ephemeral", false, "run in a runner used once, then destroyed")
	f.StringVar(&stdinFile, "stdin", "", "a file to give the code as standard input")
	f.StringArrayVarP(&env, "env", "e", nil, "KEY=VALUE for the run's environment (repeatable)")
	f.StringArrayVar(&files, "file", nil, "a local file to put in the run's directory (repeatable)")
	f.BoolVar(&asJSON, "json", false, "print the whole result as JSON")
	return cmd
}

func appsCmd(g *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "apps",
		Aliases: []string{"app"},
		Short:   "Deploy and call small persistent apps, each with its own SQLite database",
		Example: `  bothy apps deploy counter counter.py
  bothy apps invoke counter
  bothy apps logs counter
  bothy apps ls`,
	}
	cmd.AddCommand(appsDeployCmd(g), appsInvokeCmd(g), appsLogsCmd(g), appsListCmd(g), appsGetCmd(g), appsRemoveCmd(g))
	return group(cmd)
}

func appsDeployCmd(g *cli) *cobra.Command {
	var rt string
	var timeout time.Duration
	var rate float64
	var burst int
	var storage int64
	var env []string
	cmd := &cobra.Command{
		Use:   "deploy NAME FILE",
		Short: "Deploy a new version of an app from a file (a fetch(request, env) handler)",
		Example: `  bothy apps deploy counter counter.py
  bothy apps deploy api handler.js --rate 50 --timeout 5s --env MODE=prod`,
		Args: args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			envm, err := keyValues("env", env)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(a[1])
			if err != nil {
				return err
			}
			if rt == "" {
				rt = runtimes[strings.ToLower(filepath.Ext(a[1]))]
			}
			app, err := g.client().DeployApp(cmd.Context(), a[0], api.DeployAppRequest{Runtime: rt, Code: string(b), Env: envm,
				Limits: api.AppLimits{TimeoutMs: timeout.Milliseconds(), RatePerSec: rate, Burst: burst, StorageBytes: storage}})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s version %d (%s)\n", app.Name, app.Version, app.Runtime)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&rt, "runtime", "", "python or node (default: from the file's extension)")
	f.DurationVar(&timeout, "timeout", 0, "per-request limit (default 10s)")
	f.Float64Var(&rate, "rate", 0, "requests per second (default: the server's)")
	f.IntVar(&burst, "burst", 0, "burst of --rate")
	f.Int64Var(&storage, "storage", 0, "storage quota in bytes (default 64 MiB)")
	f.StringArrayVarP(&env, "env", "e", nil, "KEY=VALUE the app sees in env (repeatable)")
	return cmd
}

func appsInvokeCmd(g *cli) *cobra.Command {
	var method, data string
	var headers []string
	var include bool
	cmd := &cobra.Command{
		Use:   "invoke NAME [PATH]",
		Short: "Send a request to an app and print its answer",
		Example: `  bothy apps invoke counter
  bothy apps invoke api /items -X POST -d '{"name":"a"}' -H 'Content-Type: application/json'
  bothy apps invoke api /upload -d @file.bin -i`,
		Args: args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			path := "/"
			if len(a) > 1 {
				path = a[1]
			}
			var body io.Reader
			if data != "" {
				if name, ok := strings.CutPrefix(data, "@"); ok {
					f, err := os.Open(name)
					if err != nil {
						return err
					}
					defer f.Close()
					body = f
				} else {
					body = strings.NewReader(data)
				}
				if !cmd.Flags().Changed("request") {
					method = "POST"
				}
			}
			hdr := http.Header{}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, ":")
				if !ok {
					return usageError{fmt.Errorf("apps invoke: header %q is not Name: value", h)}
				}
				hdr.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
			resp, err := g.client().Invoke(cmd.Context(), a[0], method, path, body, hdr)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if include {
				fmt.Fprintf(out, "HTTP %d\n", resp.StatusCode)
				for k, v := range resp.Header {
					fmt.Fprintf(out, "%s: %s\n", k, strings.Join(v, ", "))
				}
				fmt.Fprintln(out)
			}
			w := &lastByte{w: out}
			if _, err := io.Copy(w, resp.Body); err != nil {
				return err
			}
			// A text answer ends its line, as a shell expects; other bodies
			// are written byte for byte.
			if ct := resp.Header.Get("Content-Type"); w.n > 0 && w.last != '\n' &&
				(strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json")) {
				fmt.Fprintln(out)
			}
			if resp.StatusCode >= 400 {
				return exitError{1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&method, "request", "X", "GET", "HTTP method (POST when -d is given)")
	f.StringVarP(&data, "data", "d", "", "request body (@FILE reads a file)")
	f.StringArrayVarP(&headers, "header", "H", nil, "header 'Name: value' (repeatable)")
	f.BoolVarP(&include, "include", "i", false, "print the status and headers too")
	return cmd
}

func appsLogsCmd(g *cli) *cobra.Command {
	var n int
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "logs NAME",
		Short:   "Show an app's recent requests, newest last",
		Example: "  bothy apps logs counter -n 50",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			logs, err := g.client().AppLogs(cmd.Context(), a[0], n)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(logs.Entries)
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
		},
	}
	cmd.Flags().IntVarP(&n, "n", "n", 20, "entries to show")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (newest first)")
	return cmd
}

func appsListCmd(g *cli) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List apps",
		Example: "  bothy apps ls --json",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			apps, err := g.client().ListApps(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(apps.Apps)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tRUNTIME\tVERSION\tSTORAGE\tUPDATED")
			for _, a := range apps.Apps {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", a.Name, a.Runtime, a.Version, a.StorageBytes, a.UpdatedAt.Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func appsGetCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "get NAME",
		Short:   "Show an app, with its code, as JSON",
		Example: "  bothy apps get counter | jq -r .code",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			app, err := g.client().GetApp(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			return printJSON(app)
		},
	}
}

func appsRemoveCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		Aliases: []string{"delete"},
		Short:   "Delete apps and their databases",
		Example: "  bothy apps rm counter",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			for _, name := range a {
				if err := g.client().DeleteApp(cmd.Context(), name); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			return nil
		},
	}
}

func usageCmd(g *cli) *cobra.Command {
	var since time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show hourly usage of runs and apps",
		Example: `  bothy usage
  bothy usage --since 168h --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := g.client().Usage(cmd.Context(), time.Now().Add(-since))
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(u.Rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOUR\tKIND\tAPP\tREQUESTS\tERRORS\tDURATION_MS\tCPU_MS\tROWS_READ\tROWS_WRITTEN\tBYTES_IN\tBYTES_OUT")
			for _, r := range u.Rows {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.0f\t%.0f\t%d\t%d\t%d\t%d\n", r.Hour.Local().Format("2006-01-02 15:00"), r.Kind, r.App,
					r.Requests, r.Errors, r.DurationMs, r.CPUMs, r.RowsRead, r.RowsWritten, r.BytesIn, r.BytesOut)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().DurationVar(&since, "since", 24*time.Hour, "how far back")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// lastByte passes writes on and remembers how many bytes went, and the last.
type lastByte struct {
	w    io.Writer
	n    int64
	last byte
}

func (l *lastByte) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.n += int64(n)
		l.last = p[n-1]
	}
	return n, err
}
