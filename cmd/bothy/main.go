// Command bothy is bothy's command-line client, built on package api's Go
// client with cobra: flags go anywhere, every command has help with examples
// (--help exits 0), durations are written as durations (30s, 500ms), listings
// take --json, and `bothy completion bash|zsh|fish` writes shell completion.
// Each command turns its flags into a request and prints the answer.
//
// The server URL and API key come from --url and --key, or BOTHY_URL and
// BOTHY_KEY.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/bothy/bothy/api"
)

// exitError carries an exit code out of a command (a remote command's).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// usageError is a command line bothy cannot run; it exits 2.
type usageError struct{ error }

// out and errOut are where commands print.
var out, errOut io.Writer = os.Stdout, os.Stderr

// cli holds the global flags.
type cli struct {
	url, key string
}

func (g *cli) client() *api.Client { return api.NewClient(g.url, g.key) }

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	out, errOut = stdout, stderr
	g := &cli{}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	var ee exitError
	var ue usageError
	var ae *api.Error
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		// Interrupted (Ctrl-C): the shell's convention, and nothing to say.
		return 130
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "bothy:", err)
		fmt.Fprintln(stderr, "Run 'bothy --help', or 'bothy COMMAND --help', for usage.")
		return 2
	case g.key == "" && errors.As(err, &ae) && ae.Status == 401:
		fmt.Fprintln(stderr, "bothy: no API key: export BOTHY_KEY=... (the admin key bothyd printed on its first start, or one made with bothy key create), or pass --key")
		return 1
	}
	fmt.Fprintln(stderr, "bothy:", err)
	return 1
}

func newRoot(g *cli) *cobra.Command {
	root := &cobra.Command{
		Use:   "bothy",
		Short: "bothy's command-line client",
		Long: `bothy drives a bothyd server: sandboxes (persistent Linux containers) with
commands, background processes, files, ports, terminals and snapshots; code
run in warm runners; and apps with their own database.

The server and key come from --url and --key, or BOTHY_URL and BOTHY_KEY.`,
		Example: `  export BOTHY_KEY=bothy_...
  ID=$(bothy create)
  bothy exec $ID -- python3 -c 'print(6*7)'
  bothy shell $ID
  bothy rm $ID`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	group(root)
	root.PersistentFlags().StringVar(&g.url, "url", envOr("BOTHY_URL", "http://127.0.0.1:7070"), "bothy URL (BOTHY_URL)")
	// The key's default is read when a command runs, so help never shows it.
	root.PersistentFlags().StringVar(&g.key, "key", "", "API key (default: BOTHY_KEY)")
	root.PersistentPreRun = func(*cobra.Command, []string) {
		if g.key == "" {
			g.key = os.Getenv("BOTHY_KEY")
		}
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddGroup(&cobra.Group{ID: "sandbox", Title: "Sandboxes:"}, &cobra.Group{ID: "inside", Title: "Inside a sandbox:"},
		&cobra.Group{ID: "state", Title: "Snapshots:"}, &cobra.Group{ID: "code", Title: "Code and apps:"},
		&cobra.Group{ID: "admin", Title: "Administration:"})
	add := func(group string, cmds ...*cobra.Command) {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	add("sandbox", createCmd(g), listCmd(g), inspectCmd(g), lifecycleCmd(g, "stop"), lifecycleCmd(g, "start"),
		lifecycleCmd(g, "pause"), lifecycleCmd(g, "resume"), lifecycleCmd(g, "rm"))
	add("inside", execCmd(g), shellCmd(g), ptyCmd(g), startProcessCmd(g), psCmd(g), logsCmd(g), killCmd(g),
		exposeCmd(g), unexposeCmd(g), portsCmd(g), cpCmd(g), catCmd(g))
	add("state", snapshotCmd(g), forkCmd(g))
	add("code", runCmd(g), appsCmd(g), usageCmd(g))
	add("admin", imagesCmd(g), imageCmd(g), keyCmd(g))
	return root
}

// group makes a command of subcommands print its help when called alone,
// and refuse an unknown subcommand as a usage error.
func group(c *cobra.Command) *cobra.Command {
	c.Args = func(_ *cobra.Command, a []string) error {
		if len(a) > 0 {
			return usageError{fmt.Errorf("unknown command %q for %q", a[0], c.CommandPath())}
		}
		return nil
	}
	c.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	return c
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func printJSON(v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// args checks a command's positional arguments, as a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{fmt.Errorf("%s: %w", cmd.CommandPath(), err)}
		}
		return nil
	}
}

// keyValues reads repeated KEY=VALUE flags.
func keyValues(flag string, list []string) (map[string]string, error) {
	if len(list) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(list))
	for _, s := range list {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--%s: want KEY=VALUE, got %q", flag, s)}
		}
		m[k] = v
	}
	return m, nil
}

// afterDash splits a command line "ID [flags] -- CMD..." into the sandbox ID
// and the command.
func afterDash(cmd *cobra.Command, a []string) (string, []string) {
	if at := cmd.ArgsLenAtDash(); at >= 0 {
		if at == 0 {
			return "", a
		}
		return a[0], a[at:]
	}
	return a[0], a[1:]
}

// completeSandboxes completes a first argument with the key's sandbox IDs.
func completeSandboxes(g *cli) cobra.CompletionFunc {
	return func(cmd *cobra.Command, a []string, prefix string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(a) > 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		page, err := g.client().ListSandboxes(cmd.Context(), api.ListOptions{Limit: 1000})
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for _, sb := range page.Sandboxes {
			if strings.HasPrefix(sb.ID, prefix) {
				out = append(out, cobra.CompletionWithDesc(sb.ID, sb.State+" "+sb.Image))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
