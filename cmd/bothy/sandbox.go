package main

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bothy/bothy/api"
)

func createCmd(g *cli) *cobra.Command {
	var req api.CreateSandboxRequest
	var env, labels []string
	var idle, ttl time.Duration
	var idem string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "create [flags]",
		Short: "Create a sandbox and print its ID",
		Long: `Create a sandbox, wait until it runs, and print its ID (or, with --json,
the whole sandbox). A sandbox idle for --idle-timeout is stopped (its files
kept); one older than --ttl is deleted.`,
		Example: `  ID=$(bothy create)
  bothy create --image bothy/base --memory 512 --cpus 1 --label team=a --env TOKEN=x
  bothy create --snapshot snap-0123 --idle-timeout 1h --ttl 24h
  bothy create --network none --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if req.Env, err = keyValues("env", env); err != nil {
				return err
			}
			if req.Labels, err = keyValues("label", labels); err != nil {
				return err
			}
			if cmd.Flags().Changed("idle-timeout") {
				s := int64(idle.Seconds())
				req.IdleTimeoutS = &s
			}
			if cmd.Flags().Changed("ttl") {
				s := int64(ttl.Seconds())
				req.TTLS = &s
			}
			sb, err := g.client().CreateSandbox(cmd.Context(), req, idem)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(sb)
			}
			fmt.Fprintln(out, sb.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Image, "image", "", "image (default: the server's, bothy/base)")
	f.StringVar(&req.Snapshot, "snapshot", "", "start from this snapshot's filesystem instead of an image")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringArrayVarP(&labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
	f.Float64Var(&req.CPUs, "cpus", 0, "CPU limit, in cores")
	f.Int64Var(&req.MemoryMB, "memory", 0, "memory limit in MiB")
	f.Int64Var(&req.DiskMB, "disk", 0, "disk limit in MiB: what the sandbox may write (default: the server's)")
	f.Int64Var(&req.Pids, "pids", 0, "process limit")
	f.StringVar(&req.Network, "network", "", `"bridge" (outbound only, the default) or "none"`)
	f.DurationVar(&idle, "idle-timeout", 0, "stop it after this long without activity (0: never; default: the server's, 15m)")
	f.StringVar(&req.IdlePolicy, "idle-policy", "", `what counts as activity: "activity" (the default) or "api" (API calls only)`)
	f.DurationVar(&ttl, "ttl", 0, "delete it this long after creation (0: never)")
	f.StringVar(&req.User, "user", "", "user commands run as (default: the image's)")
	f.StringVar(&req.Workdir, "workdir", "", "working directory of commands")
	f.StringVar(&idem, "idempotency-key", "", "a retry with the same key returns the same sandbox")
	f.BoolVar(&asJSON, "json", false, "print the sandbox as JSON, not just its ID")
	return cmd
}

func listCmd(g *cli) *cobra.Command {
	var labels []string
	var state string
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:     "ls [ID:PATH] [flags]",
		Aliases: []string{"list"},
		Short:   "List sandboxes, or the files of a sandbox's directory",
		Example: `  bothy ls
  bothy ls --label team=a --state running
  bothy ls -q | xargs bothy rm
  bothy ls --json | jq -r '.[].id'
  bothy ls $ID:/work`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx := cmd.Context()
			if len(a) == 1 {
				id, p, ok := remotePath(a[0])
				if !ok {
					return usageError{fmt.Errorf("ls: want ID:PATH, got %q", a[0])}
				}
				return listFiles(ctx, g.client(), id, p, asJSON)
			}
			lm, err := keyValues("label", labels)
			if err != nil {
				return err
			}
			all := []api.Sandbox{}
			opts := api.ListOptions{Labels: lm, State: state, Limit: 1000}
			for {
				page, err := g.client().ListSandboxes(ctx, opts)
				if err != nil {
					return err
				}
				all = append(all, page.Sandboxes...)
				if page.NextCursor == "" {
					break
				}
				opts.Cursor = page.NextCursor
			}
			switch {
			case asJSON:
				return printJSON(all)
			case quiet:
				for _, sb := range all {
					fmt.Fprintln(out, sb.ID)
				}
				return nil
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
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "only sandboxes with label KEY=VALUE (repeatable)")
	cmd.Flags().StringVar(&state, "state", "", "only sandboxes in this state (running, stopped, paused...)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only IDs")
	return cmd
}

func inspectCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:               "inspect ID",
		Short:             "Show a sandbox as JSON",
		Example:           `  bothy inspect $ID | jq .state`,
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			sb, err := g.client().GetSandbox(cmd.Context(), a[0])
			if err != nil {
				return err
			}
			return printJSON(sb)
		},
	}
}

// lifecycleCmd is stop, start, pause, resume or rm: one call per ID, each ID
// printed when done.
func lifecycleCmd(g *cli, verb string) *cobra.Command {
	short := map[string]string{
		"stop":   "Stop sandboxes (their files are kept; any exec or request starts them again)",
		"start":  "Start stopped sandboxes",
		"pause":  "Freeze sandboxes in memory",
		"resume": "Thaw paused sandboxes",
		"rm":     "Delete sandboxes and everything in them",
	}[verb]
	cmd := &cobra.Command{
		Use:               verb + " ID...",
		Short:             short,
		Example:           fmt.Sprintf("  bothy %s $ID\n  bothy %s $(bothy ls -q --label job=42)", verb, verb),
		Args:              args(cobra.MinimumNArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, ctx := g.client(), cmd.Context()
			for _, id := range ids {
				var err error
				switch verb {
				case "stop":
					_, err = c.StopSandbox(ctx, id)
				case "start":
					_, err = c.StartSandbox(ctx, id)
				case "pause":
					_, err = c.PauseSandbox(ctx, id)
				case "resume":
					_, err = c.ResumeSandbox(ctx, id)
				case "rm":
					err = c.DeleteSandbox(ctx, id)
				}
				if err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				fmt.Fprintln(out, id)
			}
			return nil
		},
	}
	if verb == "rm" {
		cmd.Aliases = []string{"delete"}
	}
	return cmd
}
