package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bothy/bothy/api"
)

func imagesCmd(g *cli) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "images",
		Short:   "List the images sandboxes can run on",
		Example: "  bothy images\n  bothy images --json",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := g.client().ListImages(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(list)
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
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func imageCmd(g *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "image",
		Short:   "Build bothy's built-in images (admin)",
		Example: "  bothy image build bothy/base\n  bothy image build --force bothy/runner-python",
	}
	var force bool
	build := &cobra.Command{
		Use:     "build NAME",
		Short:   "Build a built-in image when missing or its recipe changed (admin)",
		Example: "  bothy image build bothy/base",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			img, err := g.client().BuildImage(cmd.Context(), a[0], force, func(line string) { fmt.Fprintln(errOut, line) })
			if err != nil {
				return err
			}
			fmt.Fprintln(out, img.Name, img.ID)
			return nil
		},
	}
	build.Flags().BoolVar(&force, "force", false, "rebuild even when the recipe is unchanged")
	cmd.AddCommand(build)
	return group(cmd)
}

func keyCmd(g *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "key",
		Aliases: []string{"keys"},
		Short:   "Manage API keys (admin)",
		Example: "  bothy key create ci\n  bothy key ls\n  bothy key rm key-0123",
	}
	var admin, asJSON bool
	create := &cobra.Command{
		Use:     "create NAME [--admin]",
		Short:   "Create an API key; its secret is printed once",
		Example: "  bothy key create ci\n  bothy key create ops --admin --json",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			k, err := g.client().CreateKey(cmd.Context(), api.CreateKeyRequest{Name: a[0], Admin: admin})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(k)
			}
			fmt.Fprintf(out, "%s\t%s\n", k.ID, k.Secret)
			return nil
		},
	}
	create.Flags().BoolVar(&admin, "admin", false, "make an admin key")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var lsJSON bool
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List API keys",
		Example: "  bothy key ls --json",
		Args:    args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			list, err := g.client().ListKeys(cmd.Context())
			if err != nil {
				return err
			}
			if lsJSON {
				return printJSON(list.Keys)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tADMIN\tREVOKED")
			for _, k := range list.Keys {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%v\n", k.ID, k.Name, k.Admin, k.RevokedAt != nil)
			}
			return tw.Flush()
		},
	}
	ls.Flags().BoolVar(&lsJSON, "json", false, "print JSON")
	rm := &cobra.Command{
		Use:     "rm ID...",
		Aliases: []string{"revoke"},
		Short:   "Revoke API keys",
		Example: "  bothy key rm key-0123",
		Args:    args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			for _, id := range a {
				if err := g.client().RevokeKey(cmd.Context(), id); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
			}
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return group(cmd)
}
