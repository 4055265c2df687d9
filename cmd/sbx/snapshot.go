package main

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/sandboxd/sandboxd/api"
)

// runSnapshot: sbx snapshot create|ls|rm|restore.
func runSnapshot(ctx context.Context, c *api.Client, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sbx snapshot create ID [--name N] [--label k=v] | ls [--sandbox ID] | rm SNAP... | restore ID SNAP [PATH...] | diff SNAP SNAP|SANDBOX | export [-o FILE] SNAP | import FILE")
	}
	switch args[0] {
	case "create":
		fs := newFlags("snapshot create")
		name := fs.String("name", "", "snapshot name")
		labels := kvFlag{}
		fs.Var(labels, "label", "label KEY=VALUE (repeatable)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := needArgs(fs, 1, "sandbox ID"); err != nil {
			return err
		}
		sn, err := c.CreateSnapshot(ctx, fs.Arg(0), api.CreateSnapshotRequest{Name: *name, Labels: labels})
		if err != nil {
			return err
		}
		fmt.Fprintln(out, sn.ID)
		return nil
	case "ls":
		fs := newFlags("snapshot ls")
		sandbox := fs.String("sandbox", "", "only snapshots of this sandbox")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		list, err := c.ListSnapshots(ctx, *sandbox)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSANDBOX\tSIZE\tCREATED")
		for _, sn := range list.Snapshots {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f MB\t%s ago\n", sn.ID, sn.Name, sn.SandboxID, float64(sn.SizeBytes)/1e6, time.Since(sn.CreatedAt).Round(time.Second))
		}
		return tw.Flush()
	case "rm":
		return eachID("snapshot rm", args[1:], func(id string) error { return c.DeleteSnapshot(ctx, id) })
	case "export":
		fs := newFlags("snapshot export")
		file := fs.String("o", "", "write the archive to this file (default: standard output)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := needArgs(fs, 1, "snapshot ID"); err != nil {
			return err
		}
		w := out
		if *file != "" {
			f, err := os.Create(*file)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		_, err := c.ExportSnapshot(ctx, fs.Arg(0), w)
		return err
	case "import":
		if len(args) != 2 {
			return fmt.Errorf("usage: sbx snapshot import FILE")
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		sn, err := c.ImportSnapshot(ctx, f)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, sn.ID)
		return nil
	case "diff":
		if len(args) != 3 {
			return fmt.Errorf("usage: sbx snapshot diff SNAP SNAP|SANDBOX")
		}
		d, err := c.DiffSnapshot(ctx, args[1], args[2])
		if err != nil {
			return err
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
	case "restore":
		if len(args) < 3 {
			return fmt.Errorf("usage: sbx snapshot restore ID SNAP [PATH...]")
		}
		sb, err := c.RestoreSandbox(ctx, args[1], args[2], args[3:]...)
		if err != nil {
			return err
		}
		fmt.Fprintln(out, sb.ID)
		return nil
	}
	return fmt.Errorf("unknown snapshot command %q", args[0])
}
