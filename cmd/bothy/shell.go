package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/bothy/bothy/api"
)

// detachKeys end bothy shell but leave the session running, as in docker
// attach: Ctrl-P then Ctrl-Q.
var detachKeys = []byte{0x10, 0x11}

// shellCmd opens an interactive terminal in a sandbox (or reattaches to a
// session), in raw mode when standard input is a terminal, and exits with the
// remote exit code. The local terminal is restored on every way out.
func shellCmd(g *cli) *cobra.Command {
	var attach, user, cwd string
	var env []string
	cmd := &cobra.Command{
		Use:   "shell ID [flags] [-- CMD...]",
		Short: "Open an interactive terminal in a sandbox (or reattach to one)",
		Long: `Open an interactive terminal in a sandbox: a login shell, or CMD. bothy exits
with its exit code. Input from a pipe is typed into the terminal, then Ctrl-D.
Ctrl-P Ctrl-Q detaches and leaves the session running;
bothy prints its ID, and 'bothy shell --attach SESSION ID' reattaches with the
recent output replayed. 'bothy pty ls ID' lists a sandbox's sessions.`,
		Example: `  bothy shell $ID
  bothy shell $ID --user user --cwd /work
  bothy shell $ID -- python3
  bothy pty ls $ID
  bothy shell --attach pty-0123abcd $ID`,
		Args:              args(cobra.MinimumNArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			id, argv := afterDash(cmd, a)
			if id == "" {
				return usageError{fmt.Errorf("shell: give the sandbox ID before --")}
			}
			envm, err := keyValues("env", env)
			if err != nil {
				return err
			}
			return shell(cmd, g.client(), id, api.PtyOptions{Cmd: argv, Env: envm, User: user, Cwd: cwd, Session: attach})
		},
	}
	f := cmd.Flags()
	f.StringVar(&attach, "attach", "", "reattach to this session instead of starting one")
	f.StringVarP(&user, "user", "u", "", "user to run as")
	f.StringVarP(&cwd, "cwd", "w", "", "working directory")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	return cmd
}

func shell(cmd *cobra.Command, c *api.Client, id string, opts api.PtyOptions) error {
	in, outFd := int(os.Stdin.Fd()), int(os.Stdout.Fd())
	w, h, sizeErr := term.GetSize(outFd)
	if sizeErr == nil {
		opts.Cols, opts.Rows = uint16(w), uint16(h)
	}
	p, err := c.DialPty(cmd.Context(), id, opts)
	if err != nil {
		return err
	}
	defer p.Close()
	if opts.Session != "" && sizeErr == nil {
		// A reattached session keeps the size of its last viewer.
		_ = p.Resize(uint16(w), uint16(h))
	}
	raw := term.IsTerminal(in)
	nl := "\n"
	if raw {
		old, err := term.MakeRaw(in)
		if err != nil {
			return fmt.Errorf("raw mode: %w", err)
		}
		defer term.Restore(in, old)
		nl = "\r\n"
		// A signal that would kill bothy restores the terminal first.
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
	detached := make(chan struct{})
	// Input from a pipe or a file is typed into the terminal; when it ends,
	// the terminal gets Ctrl-D, as a person would type it, once the program
	// in it has shown something (a shell reads it then, not before), and
	// again each time it shows more, a few times.
	var inputEnded, shown atomic.Bool
	ctrlDs := 0
	go func() {
		buf := make([]byte, 32<<10)
		var prev byte
		for {
			n, err := os.Stdin.Read(buf)
			chunk := buf[:n]
			if raw {
				if i := detachAt(prev, chunk); i >= 0 {
					_, _ = p.Write(chunk[:i])
					close(detached)
					p.Close()
					return
				}
				if n > 0 {
					prev = chunk[n-1]
				}
			}
			if n > 0 {
				if _, werr := p.Write(chunk); werr != nil {
					return
				}
			}
			if err != nil {
				if !raw {
					inputEnded.Store(true)
					if shown.Load() {
						_, _ = p.Write(ctrlD)
					}
				}
				return
			}
		}
	}()
	session := p.Session.ID
	for {
		b, err := p.Read()
		select {
		case <-detached:
			fmt.Fprintf(errOut, "%sbothy: detached from session %s (still running); reattach with: bothy shell --attach %s %s%s", nl, session, session, id, nl)
			return nil
		default:
		}
		if errors.Is(err, api.ErrExited) {
			code, _, _ := p.Exit()
			if code != 0 {
				return exitError{code}
			}
			return nil
		}
		if err != nil {
			fmt.Fprintf(errOut, "%sbothy: connection to session %s ended (%v); reattach with: bothy shell --attach %s %s%s",
				nl, session, err, session, id, nl)
			return exitError{1}
		}
		if _, err := out.Write(b); err != nil {
			return err
		}
		shown.Store(true)
		if inputEnded.Load() && ctrlDs < 10 {
			ctrlDs++
			_, _ = p.Write(ctrlD)
		}
	}
}

var ctrlD = []byte{4}

// detachAt finds the detach keys in what was typed (prev: the byte typed
// before chunk) and returns where the sequence starts, or -1.
func detachAt(prev byte, chunk []byte) int {
	if len(chunk) > 0 && prev == detachKeys[0] && chunk[0] == detachKeys[1] {
		return 0
	}
	if i := bytes.Index(chunk, detachKeys); i >= 0 {
		return i
	}
	return -1
}

func ptyCmd(g *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pty",
		Short: "List and end a sandbox's terminal sessions",
		Example: `  bothy pty ls $ID
  bothy pty kill $ID pty-0123abcd`,
	}
	var asJSON, quiet bool
	ls := &cobra.Command{
		Use:               "ls ID",
		Short:             "List a sandbox's terminal sessions (to reattach with bothy shell --attach)",
		Example:           `  bothy pty ls $ID`,
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			list, err := g.client().ListPtySessions(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				return printJSON(list.Sessions)
			case quiet:
				for _, s := range list.Sessions {
					fmt.Fprintln(out, s.ID)
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SESSION\tPID\tCOMMAND\tSIZE\tVIEWERS\tSTATE\tCREATED")
			for _, s := range list.Sessions {
				state := "running"
				if s.Exited {
					state = fmt.Sprintf("exited %d", s.ExitCode)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%dx%d\t%d\t%s\t%s ago\n", s.ID, s.PID, strings.Join(s.Argv, " "), s.Cols, s.Rows,
					s.Viewers, state, time.Since(s.CreatedAt).Round(time.Second))
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	ls.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only session IDs")
	kill := &cobra.Command{
		Use:               "kill ID SESSION...",
		Short:             "End terminal sessions and their processes",
		Example:           `  bothy pty kill $ID pty-0123abcd`,
		Args:              args(cobra.MinimumNArgs(2)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			for _, s := range a[1:] {
				if err := g.client().KillPtySession(cmd.Context(), a[0], s); err != nil {
					return fmt.Errorf("%s: %w", s, err)
				}
				fmt.Fprintln(out, s)
			}
			return nil
		},
	}
	cmd.AddCommand(ls, kill)
	return group(cmd)
}
