package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bothy/bothy/api"
)

func startProcessCmd(g *cli) *cobra.Command {
	var req api.StartProcessRequest
	var env []string
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "start-process ID [flags] -- CMD [ARG...]",
		Short: "Start a background process in a sandbox and print its PID",
		Long: `Start a process that keeps running after bothy returns (a server, a watcher).
Its output is kept (the last 8 MiB by default) for 'bothy logs'; it outlives
bothy restarts.`,
		Example: `  PID=$(bothy start-process $ID --tag web -- python3 -m http.server 8000)
  bothy start-process $ID --shell 'npm run dev' --cwd /work/app --timeout 1h
  bothy logs -f $ID $PID`,
		Args:              args(cobra.MinimumNArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, argv := afterDash(cmd, a)
			if id == "" {
				return usageError{fmt.Errorf("start-process: give the sandbox ID before --")}
			}
			if len(argv) == 0 && req.Shell == "" {
				return usageError{fmt.Errorf("start-process: give a command after -- (bothy start-process ID -- CMD...), or --shell LINE")}
			}
			var err error
			if req.Env, err = keyValues("env", env); err != nil {
				return err
			}
			req.Cmd, req.TimeoutMs = argv, timeout.Milliseconds()
			p, err := g.client().StartProcess(cmd.Context(), id, req)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(p)
			}
			fmt.Fprintln(out, p.PID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVarP(&req.Cwd, "cwd", "w", "", "working directory")
	f.StringVarP(&req.User, "user", "u", "", "user to run as")
	f.StringVar(&req.Tag, "tag", "", "a tag to find the process by (bothy ps --tag)")
	f.StringVar(&req.Shell, "shell", "", "run this line with /bin/sh -c instead of CMD")
	f.BoolVar(&req.Stdin, "stdin", false, "keep its standard input open for writes")
	f.DurationVar(&timeout, "timeout", 0, "kill it after this long (default: no limit)")
	f.Int64Var(&req.LogBytes, "log-bytes", 0, "recent output kept for bothy logs, in bytes (4 KiB to 64 MiB; default 8 MiB)")
	f.BoolVar(&asJSON, "json", false, "print the process as JSON, not just its PID")
	return cmd
}

func psCmd(g *cli) *cobra.Command {
	var tag string
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "ps ID",
		Short:             "List a sandbox's background processes",
		Example:           "  bothy ps $ID\n  bothy ps $ID --tag web --json",
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			list, err := g.client().ListProcesses(cmd.Context(), a[0], tag)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(list.Processes)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PID\tSTATE\tEXIT\tTAG\tSTARTED\tCOMMAND")
			for _, p := range list.Processes {
				exit := "-"
				if p.ExitCode != nil {
					exit = strconv.Itoa(*p.ExitCode)
					if p.Signal != "" {
						exit += " (" + p.Signal + ")"
					}
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", p.PID, p.State, exit, p.Tag,
					p.StartedAt.Local().Format(time.DateTime), strings.Join(p.Cmd, " "))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&tag, "tag", "", "only processes with this tag")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// logsCmd prints a process's output (following it with -f), stdout to
// stdout and stderr to stderr.
func logsCmd(g *cli) *cobra.Command {
	var follow bool
	var from int64
	cmd := &cobra.Command{
		Use:               "logs ID PID",
		Short:             "Print a background process's output (-f follows it until it ends)",
		Example:           "  bothy logs $ID $PID\n  bothy logs -f $ID $PID\n  bothy logs --from 1048576 $ID $PID",
		Args:              args(cobra.ExactArgs(2)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			pid, err := number(a[1], "PID")
			if err != nil {
				return err
			}
			return g.client().ProcessLogs(cmd.Context(), a[0], pid, from, follow, func(r api.LogRecord) error {
				switch r.Type {
				case "output":
					w := out
					if r.Stream == "stderr" {
						w = errOut
					}
					_, err := fmt.Fprint(w, r.Data)
					return err
				case "gap":
					fmt.Fprintf(errOut, "bothy: output from byte %d to %d was dropped (a process keeps only its recent output)\n", r.Offset, r.To)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output until the process ends")
	cmd.Flags().Int64Var(&from, "from", 0, "start at this byte offset of the output")
	return cmd
}

// killCmd signals a process's group (SIGKILL unless --signal names one).
func killCmd(g *cli) *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:               "kill ID PID",
		Short:             "Kill a background process and its group (or send it --signal)",
		Example:           "  bothy kill $ID $PID\n  bothy kill --signal TERM $ID $PID",
		Args:              args(cobra.ExactArgs(2)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			pid, err := number(a[1], "PID")
			if err != nil {
				return err
			}
			if sig != "" {
				_, err = g.client().SignalProcess(cmd.Context(), a[0], pid, sig)
			} else {
				_, err = g.client().KillProcess(cmd.Context(), a[0], pid)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "", "the signal to send (TERM, INT, HUP...); by default SIGKILL, waiting for the exit")
	return cmd
}

func exposeCmd(g *cli) *cobra.Command {
	var public, asJSON bool
	cmd := &cobra.Command{
		Use:   "expose ID PORT",
		Short: "Expose a port of a sandbox over HTTP and print its URL and token",
		Long: `Expose a port: requests to the printed URL reach the server listening on it in
the sandbox. A private port needs its token, sent as the X-Bothy-Port-Token
header or once as ?bothy_token=TOKEN (a browser keeps it in a cookie on a
preview host); the owner's API key also works on the path form
(/v1/sandboxes/ID/ports/PORT/). --public needs neither.`,
		Example:           "  bothy expose $ID 8000\n  bothy expose --public $ID 3000 --json",
		Args:              args(cobra.ExactArgs(2)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			port, err := number(a[1], "port")
			if err != nil {
				return err
			}
			p, err := g.client().ExposePort(cmd.Context(), a[0], api.ExposePortRequest{Port: port, Public: public})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(p)
			}
			fmt.Fprintf(out, "%s\n", p.URL)
			if !p.Public {
				fmt.Fprintf(out, "token %s\n", p.Token)
				// A browser opens it with the token; on a preview host
				// once, then a cookie holds it.
				fmt.Fprintf(out, "browser %s?bothy_token=%s\n", p.URL, p.Token)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&public, "public", false, "reachable without the port's token")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func unexposeCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:               "unexpose ID PORT",
		Short:             "Stop exposing a port",
		Example:           "  bothy unexpose $ID 8000",
		Args:              args(cobra.ExactArgs(2)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			port, err := number(a[1], "port")
			if err != nil {
				return err
			}
			return g.client().UnexposePort(cmd.Context(), a[0], port)
		},
	}
}

func portsCmd(g *cli) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "ports ID",
		Short:             "List a sandbox's exposed ports",
		Example:           "  bothy ports $ID",
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			list, err := g.client().ListPorts(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(list.Ports)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PORT\tPUBLIC\tURL")
			for _, p := range list.Ports {
				fmt.Fprintf(tw, "%d\t%v\t%s\n", p.Port, p.Public, p.URL)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (with the tokens)")
	return cmd
}

// number reads a PID or a port argument.
func number(s, what string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, usageError{fmt.Errorf("%q is not a %s", s, what)}
	}
	return n, nil
}
