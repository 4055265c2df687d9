package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/sandboxd/sandboxd/api"
)

func runImages(ctx context.Context, c *api.Client, args []string) error {
	list, err := c.ListImages(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSIZE\tBUILTIN")
	for _, img := range list.Images {
		id := img.ID
		if len(id) > 19 {
			id = id[:19]
		}
		fmt.Fprintf(tw, "%s\t%s\t%.1f MB\t%v\n", img.Name, id, float64(img.SizeBytes)/1e6, img.Builtin)
	}
	return tw.Flush()
}

func runImage(ctx context.Context, c *api.Client, args []string) error {
	if len(args) == 0 || args[0] != "build" {
		return fmt.Errorf("usage: sbx image build [--force] NAME")
	}
	fs := newFlags("image build")
	force := fs.Bool("force", false, "rebuild even when the recipe is unchanged")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := needArgs(fs, 1, "image name"); err != nil {
		return err
	}
	img, err := c.BuildImage(ctx, fs.Arg(0), *force, func(line string) { fmt.Fprintln(errOut, line) })
	if err != nil {
		return err
	}
	fmt.Fprintln(out, img.Name, img.ID)
	return nil
}

func runKey(ctx context.Context, c *api.Client, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sbx key create NAME [--admin] | key ls | key rm ID")
	}
	switch args[0] {
	case "create":
		fs := newFlags("key create")
		admin := fs.Bool("admin", false, "make an admin key")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if err := needArgs(fs, 1, "key name"); err != nil {
			return err
		}
		k, err := c.CreateKey(ctx, api.CreateKeyRequest{Name: fs.Arg(0), Admin: *admin})
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s\t%s\n", k.ID, k.Secret)
		return nil
	case "ls":
		list, err := c.ListKeys(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tADMIN\tREVOKED")
		for _, k := range list.Keys {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\n", k.ID, k.Name, k.Admin, k.RevokedAt != nil)
		}
		return tw.Flush()
	case "rm":
		if len(args) != 2 {
			return fmt.Errorf("usage: sbx key rm ID")
		}
		return c.RevokeKey(ctx, args[1])
	}
	return fmt.Errorf("unknown key command %q", args[0])
}
