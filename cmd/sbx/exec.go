package main

import (
	"context"
	"fmt"
	"os"

	"github.com/sandboxd/sandboxd/api"
)

// runExec streams a command's output and exits with its exit code.
func runExec(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("exec")
	env := kvFlag{}
	var req api.ExecRequest
	fs.Var(env, "env", "environment variable KEY=VALUE (repeatable)")
	fs.StringVar(&req.Cwd, "cwd", "", "working directory")
	fs.StringVar(&req.User, "user", "", "user to run as")
	fs.Int64Var(&req.TimeoutMs, "timeout", 0, "timeout in milliseconds (default 10 minutes)")
	fs.StringVar(&req.Shell, "shell", "", "run this line with /bin/sh -c instead of CMD")
	stdin := fs.Bool("i", false, "stream standard input to the command (over a WebSocket) while its output streams back")
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
		return fmt.Errorf("exec: give a command after the sandbox ID (sbx exec ID -- CMD...)")
	}
	req.Cmd = cmd
	if len(env) > 0 {
		req.Env = env
	}
	var res api.ExecResult
	var err error
	if *stdin {
		// Standard input streams to the command while its output streams back.
		res, err = c.ExecSocket(ctx, id, req, os.Stdin, out, errOut)
	} else {
		res, err = c.ExecStream(ctx, id, req, out, errOut)
	}
	if err != nil {
		return err
	}
	if res.StartError != "" {
		fmt.Fprintln(errOut, "sbx:", res.StartError)
	}
	if res.ExitCode != 0 {
		return exitError{res.ExitCode}
	}
	return nil
}
