package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"

	"github.com/sandboxd/sandboxd/api"
)

// runShell opens an interactive terminal in a sandbox (or reattaches to a
// session), in raw mode when standard input is a terminal, and exits with the
// remote exit code. The local terminal is restored on every way out.
func runShell(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("shell")
	attach := fs.String("attach", "", "reattach to this session instead of starting one")
	user := fs.String("user", "", "user to run as")
	cwd := fs.String("cwd", "", "working directory")
	env := kvFlag{}
	fs.Var(env, "env", "environment variable KEY=VALUE (repeatable)")
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
	in, outFd := int(os.Stdin.Fd()), int(os.Stdout.Fd())
	opts := api.PtyOptions{Cmd: cmd, Env: env, User: *user, Cwd: *cwd, Session: *attach}
	if w, h, err := term.GetSize(outFd); err == nil {
		opts.Cols, opts.Rows = uint16(w), uint16(h)
	}
	p, err := c.DialPty(ctx, id, opts)
	if err != nil {
		return err
	}
	defer p.Close()

	if term.IsTerminal(in) {
		old, err := term.MakeRaw(in)
		if err != nil {
			return fmt.Errorf("raw mode: %w", err)
		}
		defer term.Restore(in, old)
		// A signal that would kill sbx restores the terminal first.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGHUP)
		defer signal.Stop(sigs)
		go func() {
			if _, ok := <-sigs; ok {
				term.Restore(in, old)
				os.Exit(129)
			}
		}()
	}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for range winch {
			if w, h, err := term.GetSize(outFd); err == nil {
				_ = p.Resize(uint16(w), uint16(h))
			}
		}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				if _, werr := p.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		b, err := p.Read()
		if errors.Is(err, api.ErrExited) {
			code, _, _ := p.Exit()
			if code != 0 {
				return exitError{code}
			}
			return nil
		}
		if err != nil {
			fmt.Fprintf(errOut, "\r\nsbx: connection to session %s ended (%v); reattach with: sbx shell --attach %s %s\r\n",
				p.Session.ID, err, p.Session.ID, id)
			return exitError{1}
		}
		if _, err := out.Write(b); err != nil {
			return err
		}
	}
}
