package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sandboxd/sandboxd/api"
)

// runStartProcess starts a background process and prints its PID.
func runStartProcess(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("start-process")
	env := kvFlag{}
	var req api.StartProcessRequest
	fs.Var(env, "env", "environment variable KEY=VALUE (repeatable)")
	fs.StringVar(&req.Cwd, "cwd", "", "working directory")
	fs.StringVar(&req.User, "user", "", "user to run as")
	fs.StringVar(&req.Tag, "tag", "", "a tag to find the process by")
	fs.StringVar(&req.Shell, "shell", "", "run this line with /bin/sh -c instead of CMD")
	fs.BoolVar(&req.Stdin, "stdin", false, "keep its standard input open for writes")
	timeout := fs.Duration("timeout", 0, "kill it after this long (default: no limit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "sandbox ID"); err != nil {
		return err
	}
	id, cmd := fs.Arg(0), fs.Args()[1:]
	if len(cmd) > 0 && cmd[0] == "--" {
		cmd = cmd[1:]
	}
	if len(cmd) == 0 && req.Shell == "" {
		return fmt.Errorf("start-process: give a command after the sandbox ID (sbx start-process ID -- CMD...)")
	}
	req.Cmd, req.TimeoutMs = cmd, timeout.Milliseconds()
	if len(env) > 0 {
		req.Env = env
	}
	p, err := c.StartProcess(ctx, id, req)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, p.PID)
	return nil
}

// runPs lists a sandbox's background processes.
func runPs(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("ps")
	tag := fs.String("tag", "", "only processes with this tag")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "sandbox ID"); err != nil {
		return err
	}
	list, err := c.ListProcesses(ctx, fs.Arg(0), *tag)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(list)
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
}

// runLogs prints a process's output (following it with -f), stdout to
// stdout and stderr to stderr.
func runLogs(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("logs")
	follow := fs.Bool("f", false, "follow the output until the process ends")
	from := fs.Int64("from", 0, "start at this byte offset of the output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, pid, err := idAndNumber(fs, "PID")
	if err != nil {
		return err
	}
	return c.ProcessLogs(ctx, id, pid, *from, *follow, func(r api.LogRecord) error {
		switch r.Type {
		case "output":
			w := out
			if r.Stream == "stderr" {
				w = errOut
			}
			_, err := fmt.Fprint(w, r.Data)
			return err
		case "gap":
			fmt.Fprintf(errOut, "sbx: output from byte %d to %d was dropped (a process keeps its last 8 MiB)\n", r.Offset, r.To)
		}
		return nil
	})
}

// runKill signals a process's group (SIGKILL unless --signal names one).
func runKill(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("kill")
	sig := fs.String("signal", "", "the signal to send (TERM, INT, HUP...); by default SIGKILL, waiting for the exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, pid, err := idAndNumber(fs, "PID")
	if err != nil {
		return err
	}
	if *sig != "" {
		_, err = c.SignalProcess(ctx, id, pid, *sig)
	} else {
		_, err = c.KillProcess(ctx, id, pid)
	}
	return err
}

// runExpose exposes a port of a sandbox and prints its URL and token.
func runExpose(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("expose")
	public := fs.Bool("public", false, "reachable without the port's token (host form)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, port, err := idAndNumber(fs, "port")
	if err != nil {
		return err
	}
	p, err := c.ExposePort(ctx, id, api.ExposePortRequest{Port: port, Public: *public})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s\ntoken %s\n", p.URL, p.Token)
	if p.URL != p.PathURL && !p.Public {
		// The host form: a browser opens it once with the token.
		fmt.Fprintf(out, "browser %s?sandboxd_token=%s\n", p.URL, p.Token)
	}
	return nil
}

// runUnexpose forgets a port's exposure.
func runUnexpose(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("unexpose")
	if err := fs.Parse(args); err != nil {
		return err
	}
	id, port, err := idAndNumber(fs, "port")
	if err != nil {
		return err
	}
	return c.UnexposePort(ctx, id, port)
}

// idAndNumber reads the two arguments "ID N" of a command, N a PID or a
// port (what).
func idAndNumber(fs *flag.FlagSet, what string) (string, int, error) {
	if err := needArgs(fs, 2, "sandbox ID and "+what); err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(fs.Arg(1))
	if err != nil {
		return "", 0, fmt.Errorf("%s: %q is not a %s", strings.TrimPrefix(fs.Name(), "sbx "), fs.Arg(1), what)
	}
	return fs.Arg(0), n, nil
}
