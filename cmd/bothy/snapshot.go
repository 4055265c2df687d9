package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bothy/bothy/api"
)

func snapshotCmd(g *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "snapshot",
		Aliases: []string{"snapshots", "snap"},
		Short:   "Checkpoint, restore, branch, diff and move sandboxes' filesystems",
		Example: `  SNAP=$(bothy snapshot create $ID --name before-upgrade)
  bothy snapshot restore $ID $SNAP
  bothy create --snapshot $SNAP
  bothy snapshot diff $SNAP $ID
  bothy snapshot export $SNAP -o snap.tar`,
	}
	cmd.AddCommand(snapshotCreateCmd(g), snapshotListCmd(g), snapshotRestoreCmd(g), snapshotDiffCmd(g),
		snapshotExportCmd(g), snapshotImportCmd(g), snapshotRemoveCmd(g))
	return group(cmd)
}

func snapshotCreateCmd(g *cli) *cobra.Command {
	var name string
	var labels []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:               "create ID [--name NAME] [--label K=V]",
		Short:             "Checkpoint a sandbox's filesystem and print the snapshot's ID",
		Example:           "  SNAP=$(bothy snapshot create $ID --name before-upgrade --label job=42)",
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			lm, err := keyValues("label", labels)
			if err != nil {
				return err
			}
			sn, err := g.client().CreateSnapshot(cmd.Context(), a[0], api.CreateSnapshotRequest{Name: name, Labels: lm})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(sn)
			}
			fmt.Fprintln(out, sn.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "snapshot name")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "label KEY=VALUE (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the snapshot as JSON, not just its ID")
	return cmd
}

func snapshotListCmd(g *cli) *cobra.Command {
	var sandbox string
	var asJSON, quiet bool
	cmd := &cobra.Command{
		Use:     "ls [--sandbox ID]",
		Aliases: []string{"list"},
		Short:   "List snapshots",
		Example: "  bothy snapshot ls\n  bothy snapshot ls --sandbox $ID --json",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := g.client().ListSnapshots(cmd.Context(), sandbox)
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				return printJSON(list.Snapshots)
			case quiet:
				for _, sn := range list.Snapshots {
					fmt.Fprintln(out, sn.ID)
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSANDBOX\tSIZE\tCREATED")
			for _, sn := range list.Snapshots {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\t%s ago\n", sn.ID, sn.Name, sn.SandboxID, float64(sn.SizeBytes)/1e6, time.Since(sn.CreatedAt).Round(time.Second))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&sandbox, "sandbox", "", "only snapshots of this sandbox")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only IDs")
	return cmd
}

func snapshotRestoreCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:   "restore ID SNAP [PATH...]",
		Short: "Put a sandbox's filesystem back as a snapshot has it (or only PATHs)",
		Example: `  bothy snapshot restore $ID $SNAP
  bothy snapshot restore $ID $SNAP /work/config.yaml /work/data`,
		Args:              args(cobra.MinimumNArgs(2)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			sb, err := g.client().RestoreSandbox(cmd.Context(), a[0], a[1], a[2:]...)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, sb.ID)
			return nil
		},
	}
}

func snapshotDiffCmd(g *cli) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "diff SNAP SNAP|SANDBOX",
		Short:   "Show what differs between a snapshot and another snapshot or a sandbox",
		Example: "  bothy snapshot diff $SNAP $ID\n  bothy snapshot diff $SNAP $OTHER --json",
		Args:    args(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			d, err := g.client().DiffSnapshot(cmd.Context(), a[0], a[1])
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(d)
			}
			if len(d.Changes) == 0 {
				fmt.Fprintln(out, "no changes")
				return nil
			}
			for _, e := range d.Changes {
				mark := map[string]string{"added": "+", "deleted": "-", "modified": "~"}[e.Change]
				fmt.Fprintf(out, "%s %s\t%s\t%d\n", mark, e.Path, e.Type, e.Size)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func snapshotExportCmd(g *cli) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "export SNAP [-o FILE]",
		Short:   "Write a snapshot as a portable tar archive (to import on another bothy)",
		Example: "  bothy snapshot export $SNAP -o snap.tar\n  bothy snapshot export $SNAP | ssh other bothy snapshot import -",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			w := out
			if file != "" && file != "-" {
				f, err := os.Create(file)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			_, err := g.client().ExportSnapshot(cmd.Context(), a[0], w)
			return err
		},
	}
	cmd.Flags().StringVarP(&file, "output", "o", "", "write the archive to this file (default: standard output)")
	return cmd
}

func snapshotImportCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "import FILE|-",
		Short:   "Import an exported snapshot and print its new ID",
		Example: "  SNAP=$(bothy snapshot import snap.tar)\n  bothy create --snapshot $SNAP",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			r := os.Stdin
			if a[0] != "-" {
				f, err := os.Open(a[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = f
			}
			sn, err := g.client().ImportSnapshot(cmd.Context(), r)
			if err != nil {
				return err
			}
			fmt.Fprintln(out, sn.ID)
			return nil
		},
	}
}

func snapshotRemoveCmd(g *cli) *cobra.Command {
	return &cobra.Command{
		Use:     "rm SNAP...",
		Aliases: []string{"delete"},
		Short:   "Delete snapshots",
		Example: "  bothy snapshot rm $SNAP",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			for _, id := range a {
				if err := g.client().DeleteSnapshot(cmd.Context(), id); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				fmt.Fprintln(out, id)
			}
			return nil
		},
	}
}

func forkCmd(g *cli) *cobra.Command {
	var count int
	var labels []string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "fork ID [-n COUNT] [--label K=V]",
		Short: "Make new sandboxes from a sandbox's filesystem as it is now; print their IDs",
		Long: `Checkpoint a sandbox and start COUNT new sandboxes from the checkpoint, with
the source's limits, environment, user and working directory. All or nothing.`,
		Example: `  bothy fork $ID -n 4 --label experiment=b
  for id in $(bothy fork $ID -n 3); do bothy exec $id -- ./try.sh & done; wait`,
		Args:              args(cobra.ExactArgs(1)),
		ValidArgsFunction: completeSandboxes(g),
		RunE: func(cmd *cobra.Command, a []string) error {
			lm, err := keyValues("label", labels)
			if err != nil {
				return err
			}
			res, err := g.client().Fork(cmd.Context(), a[0], api.ForkRequest{Count: count, Labels: lm})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(res)
			}
			for _, sb := range res.Sandboxes {
				fmt.Fprintln(out, sb.ID)
			}
			return nil
		},
	}
	cmd.Flags().IntVarP(&count, "count", "n", 1, "how many sandboxes (1 to 16)")
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "label KEY=VALUE of the new sandboxes (repeatable)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the snapshot and the sandboxes as JSON")
	return cmd
}
