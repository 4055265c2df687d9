package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sandboxd/sandboxd/api"
)

func runCreate(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("create")
	env, labels := kvFlag{}, kvFlag{}
	var req api.CreateSandboxRequest
	fs.StringVar(&req.Image, "image", "", "image (default: the server's, sandboxd/base)")
	fs.StringVar(&req.Snapshot, "snapshot", "", "restore this snapshot into the new sandbox")
	fs.Var(env, "env", "environment variable KEY=VALUE (repeatable)")
	fs.Var(labels, "label", "label KEY=VALUE (repeatable)")
	fs.Float64Var(&req.CPUs, "cpus", 0, "CPU limit")
	fs.Int64Var(&req.MemoryMB, "memory", 0, "memory limit in MiB")
	fs.Int64Var(&req.DiskMB, "disk", 0, "disk limit in MiB: bytes and files the sandbox may write (default: the server's)")
	fs.Int64Var(&req.Pids, "pids", 0, "process limit")
	fs.StringVar(&req.Network, "network", "", `"bridge" or "none"`)
	idle := fs.Int64("idle-timeout", -1, "seconds idle before stopping (0 never; default the server's)")
	ttl := fs.Int64("ttl", 0, "seconds before deletion (0 never)")
	fs.StringVar(&req.User, "user", "", "user commands run as (default root)")
	fs.StringVar(&req.Workdir, "workdir", "", "working directory")
	idem := fs.String("idempotency-key", "", "repeat-safe key")
	asJSON := fs.Bool("json", false, "print the sandbox as JSON, not just its ID")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(env) > 0 {
		req.Env = env
	}
	if len(labels) > 0 {
		req.Labels = labels
	}
	if *idle >= 0 {
		req.IdleTimeoutS = idle
	}
	if *ttl > 0 {
		req.TTLS = ttl
	}
	sb, err := c.CreateSandbox(ctx, req, *idem)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(sb)
	}
	fmt.Fprintln(out, sb.ID)
	return nil
}

func runList(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("ls")
	labels := kvFlag{}
	fs.Var(labels, "label", "only sandboxes with label KEY=VALUE (repeatable)")
	state := fs.String("state", "", "only sandboxes in this state")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 1 {
		id, p, ok := remotePath(fs.Arg(0))
		if !ok {
			return fmt.Errorf("ls: want ID:PATH, got %q", fs.Arg(0))
		}
		return listFiles(ctx, c, id, p)
	}
	var all []api.Sandbox
	opts := api.ListOptions{Labels: labels, State: *state, Limit: 1000}
	for {
		page, err := c.ListSandboxes(ctx, opts)
		if err != nil {
			return err
		}
		all = append(all, page.Sandboxes...)
		if page.NextCursor == "" {
			break
		}
		opts.Cursor = page.NextCursor
	}
	if *asJSON {
		return printJSON(all)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tIMAGE\tCREATED\tLABELS")
	for _, sb := range all {
		var ls []string
		for k, v := range sb.Labels {
			ls = append(ls, k+"="+v)
		}
		sort.Strings(ls)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s ago\t%s\n", sb.ID, sb.State, sb.Image,
			time.Since(sb.CreatedAt).Round(time.Second), strings.Join(ls, ","))
	}
	return tw.Flush()
}

func runInspect(ctx context.Context, c *api.Client, args []string) error {
	fs := newFlags("inspect")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "sandbox ID"); err != nil {
		return err
	}
	sb, err := c.GetSandbox(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	return printJSON(sb)
}

// eachID runs fn on every ID argument, printing each ID done.
func eachID(name string, args []string, fn func(id string) error) error {
	fs := newFlags(name)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "sandbox ID"); err != nil {
		return err
	}
	for _, id := range fs.Args() {
		if err := fn(id); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		fmt.Fprintln(out, id)
	}
	return nil
}

func runStop(ctx context.Context, c *api.Client, args []string) error {
	return eachID("stop", args, func(id string) error { _, err := c.StopSandbox(ctx, id); return err })
}

func runStart(ctx context.Context, c *api.Client, args []string) error {
	return eachID("start", args, func(id string) error { _, err := c.StartSandbox(ctx, id); return err })
}

func runRemove(ctx context.Context, c *api.Client, args []string) error {
	return eachID("rm", args, func(id string) error { return c.DeleteSandbox(ctx, id) })
}

func runPause(ctx context.Context, c *api.Client, args []string) error {
	return eachID("pause", args, func(id string) error { _, err := c.PauseSandbox(ctx, id); return err })
}

func runResume(ctx context.Context, c *api.Client, args []string) error {
	return eachID("resume", args, func(id string) error { _, err := c.ResumeSandbox(ctx, id); return err })
}
