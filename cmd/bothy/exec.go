package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/bothy/bothy/api"
)

// execCmd streams a command's output and exits with its exit code.
func execCmd(g *cli) *cobra.Command {
	var req api.ExecRequest
	var env []string
	var timeout time.Duration
	var interactive, asJSON bool
	cmd := &cobra.Command{
		Use:   "exec ID [flags] -- CMD [ARG...]",
		Short: "Run a command in a sandbox, stream its output, exit with its code",
		Long: `Run a command in a sandbox and stream its output as it comes; bothy exits with
the command's exit code. Everything after -- is the command, run without a
shell; --shell runs a line with /bin/sh -c instead. With -i, standard input
streams to the command too.`,
		Example: `  bothy exec $ID -- python3 -c 'print(6*7)'
  bothy exec $ID --shell 'cd /work && make test'
  bothy exec $ID --timeout 30s --env DEBUG=1 --cwd /work -- ./build.sh
  tar -c . | bothy exec -i $ID -- tar -x -C /work
  bothy exec $ID --json -- uname -a`,
		Args:              args(cobra.MinimumNArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, argv := afterDash(cmd, a)
			if id == "" {
				return usageError{fmt.Errorf("exec: give the sandbox ID before --")}
			}
			if len(argv) == 0 && req.Shell == "" {
				return usageError{fmt.Errorf("exec: give a command after -- (bothy exec ID -- CMD...), or --shell LINE")}
			}
			var err error
			if req.Env, err = keyValues("env", env); err != nil {
				return err
			}
			req.Cmd, req.TimeoutMs = argv, timeout.Milliseconds()
			c, ctx := g.client(), cmd.Context()
			var res api.ExecResult
			switch {
			case asJSON:
				res, err = c.Exec(ctx, id, req)
				if err == nil {
					err = printJSON(res)
				}
			case interactive:
				res, err = c.ExecSocket(ctx, id, req, os.Stdin, out, errOut)
			default:
				res, err = c.ExecStream(ctx, id, req, out, errOut)
			}
			if err != nil {
				return err
			}
			if !asJSON {
				switch {
				case res.StartError != "":
					fmt.Fprintln(errOut, "bothy:", res.StartError)
				case res.TimedOut:
					limit := timeout
					if limit <= 0 {
						limit = 10 * time.Minute
					}
					fmt.Fprintf(errOut, "bothy: the command timed out after %s and was killed (exit %d); --timeout sets the limit\n", limit, res.ExitCode)
				case res.OOMKilled:
					fmt.Fprintf(errOut, "bothy: the command ran out of the sandbox's memory and was killed (exit %d)\n", res.ExitCode)
				}
			}
			if res.ExitCode != 0 {
				return exitError{res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVarP(&req.Cwd, "cwd", "w", "", "working directory")
	f.StringVarP(&req.User, "user", "u", "", "user to run as")
	f.DurationVar(&timeout, "timeout", 0, "kill the command after this long (default 10m)")
	f.StringVar(&req.Shell, "shell", "", "run this line with /bin/sh -c instead of CMD")
	f.BoolVarP(&interactive, "interactive", "i", false, "stream standard input to the command while its output streams back")
	f.BoolVar(&asJSON, "json", false, "wait, then print the whole result as JSON (exit code, output, CPU, memory)")
	return cmd
}
