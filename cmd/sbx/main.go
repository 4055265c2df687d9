// Command sbx is sandboxd's command-line client, built on package api's Go
// client. Each command turns its flags into a request and prints the answer.
//
//	sbx create [flags]            make a sandbox, print its ID
//	sbx ls [flags]                list sandboxes (sbx ls ID:PATH lists a directory)
//	sbx cp SRC DST                copy files and directories in or out (ID:PATH)
//	sbx cat ID:PATH               print a sandbox's file
//	sbx inspect ID                show one sandbox as JSON
//	sbx exec [flags] ID -- CMD... run a command, stream its output, exit with its code
//	sbx shell ID [-- CMD...]      an interactive terminal (--attach SESSION to reattach)
//	sbx stop|start|rm ID...       stop, start or delete sandboxes
//	sbx pause|resume ID...        freeze and thaw sandboxes
//	sbx snapshot create|ls|rm|restore|diff|export|import  checkpoints
//	sbx images                    list images
//	sbx image build [--force] NAME build a built-in image
//	sbx key create|ls|rm          manage API keys (admin)
//	sbx run python -c CODE        run dynamic code in a warm runner (or sbx run FILE)
//	sbx apps deploy|invoke|logs|ls|get|rm  apps with their own database
//	sbx usage                     hourly usage of runs and apps
//
// The server URL and API key come from --url and --key, or SANDBOXD_URL and
// SANDBOXD_KEY.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/sandboxd/sandboxd/api"
)

// exitError carries an exit code out of a command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

type command struct {
	run   func(ctx context.Context, c *api.Client, args []string) error
	usage string
}

var commands = map[string]command{
	"create":        {runCreate, "create [flags]"},
	"ls":            {runList, "ls [--label k=v] [--state S] [--json] | ls ID:PATH"},
	"cp":            {runCopy, "cp LOCAL ID:PATH | cp ID:PATH LOCAL"},
	"cat":           {runCat, "cat ID:PATH"},
	"inspect":       {runInspect, "inspect ID"},
	"exec":          {runExec, "exec [flags] ID -- CMD [ARG...]"},
	"shell":         {runShell, "shell [--attach SESSION] [--user U] [--cwd DIR] ID [-- CMD...]"},
	"start-process": {runStartProcess, "start-process [--tag T] [--stdin] [--env K=V] [--cwd DIR] [--user U] [--timeout D] [--shell LINE] ID [-- CMD...]"},
	"ps":            {runPs, "ps [--tag T] [--json] ID"},
	"logs":          {runLogs, "logs [-f] [--from OFFSET] ID PID"},
	"kill":          {runKill, "kill [--signal S] ID PID"},
	"expose":        {runExpose, "expose [--public] ID PORT"},
	"unexpose":      {runUnexpose, "unexpose ID PORT"},
	"stop":          {runStop, "stop ID..."},
	"start":         {runStart, "start ID..."},
	"rm":            {runRemove, "rm ID..."},
	"pause":         {runPause, "pause ID..."},
	"snapshot":      {runSnapshot, "snapshot create ID [--name N] | ls [--sandbox ID] | rm SNAP... | restore ID SNAP [PATH...] | diff SNAP SNAP|SANDBOX | export [-o FILE] SNAP | import FILE"},
	"resume":        {runResume, "resume ID..."},
	"images":        {runImages, "images"},
	"image":         {runImage, "image build [--force] NAME"},
	"key":           {runKey, "key create NAME [--admin] | key ls | key rm ID"},
	"run":           {runRun, "run RUNTIME -c CODE | run RUNTIME - | run FILE  [--timeout D] [--memory MiB] [--ephemeral] [--env K=V] [--file F] [--stdin F]"},
	"apps":          {runApps, "apps deploy NAME FILE [--runtime R] [--rate N] | invoke NAME [PATH] [-X M] [-d BODY] [-H H] [-i] | logs NAME | ls | get NAME | rm NAME..."},
	"usage":         {runUsage, "usage [--since 24h] [--json]"},
}

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	out, errOut = stdout, stderr
	global := flag.NewFlagSet("sbx", flag.ContinueOnError)
	global.SetOutput(stderr)
	url := global.String("url", envOr("SANDBOXD_URL", "http://127.0.0.1:7070"), "sandboxd URL (SANDBOXD_URL)")
	key := global.String("key", os.Getenv("SANDBOXD_KEY"), "API key (SANDBOXD_KEY)")
	global.Usage = func() {
		fmt.Fprintln(stderr, "usage: sbx [--url URL] [--key KEY] COMMAND [ARGS]\n\ncommands:")
		for _, name := range []string{"create", "ls", "inspect", "exec", "start-process", "ps", "logs", "kill", "expose", "unexpose", "shell", "cp", "cat", "stop", "start", "pause", "resume", "snapshot", "rm", "images", "image", "key", "run", "apps", "usage"} {
			fmt.Fprintln(stderr, "  sbx "+commands[name].usage)
		}
	}
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // the help asked for was printed
		}
		return 2
	}
	if global.NArg() == 0 {
		global.Usage()
		return 2
	}
	cmd, ok := commands[global.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "sbx: unknown command %q\n", global.Arg(0))
		global.Usage()
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := cmd.run(ctx, api.NewClient(*url, *key), global.Args()[1:])
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0 // the help asked for was printed
	}
	var ae *api.Error
	if *key == "" && errors.As(err, &ae) && ae.Status == 401 {
		fmt.Fprintln(stderr, "sbx: no API key: export SANDBOXD_KEY=... (the admin key sandboxd printed on its first start, or one made with sbx key create), or pass --key")
		return 1
	}
	fmt.Fprintln(stderr, "sbx:", err)
	return 1
}

// out and errOut are where commands print; tests point them at buffers.
var out, errOut io.Writer = os.Stdout, os.Stderr

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

// kvFlag collects repeated KEY=VALUE flags.
type kvFlag map[string]string

func (f kvFlag) String() string { return "" }

func (f kvFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	f[k] = v
	return nil
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sbx "+name, flag.ContinueOnError)
	fs.SetOutput(errOut)
	return fs
}

// needArgs checks a command got at least n positional arguments.
func needArgs(fs *flag.FlagSet, n int, what string) error {
	if fs.NArg() < n {
		return fmt.Errorf("%s: missing %s", fs.Name(), what)
	}
	return nil
}
