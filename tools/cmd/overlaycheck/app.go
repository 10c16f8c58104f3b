package main

import (
	"fmt"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/tools/overlaycheck"
)

func newApp() *cli.App {
	return &cli.App{
		Name:      "overlaycheck",
		Usage:     "build every kustomize/overlays/* and check it against docs/deploy.md and docs/settings",
		ArgsUsage: "[target dir...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "repo", Usage: "repository root (default: the nearest directory above with go.work)"},
			&cli.BoolFlag{Name: "print", Usage: "print the built YAML of the targets instead of checking them"},
		},
		Action: run,
	}
}

func run(cctx *cli.Context) error {
	root := cctx.String("repo")
	if root == "" {
		var err error
		if root, err = repo.Root("."); err != nil {
			return fmt.Errorf("%w (pass --repo)", err)
		}
	}
	targets := cctx.Args().Slice()
	for i, t := range targets {
		if !filepath.IsAbs(t) {
			targets[i] = filepath.Join(root, t)
		}
	}
	if len(targets) == 0 {
		var err error
		if targets, err = overlaycheck.Targets(root); err != nil {
			return err
		}
	}
	fs := filesys.MakeFsOnDisk()
	if cctx.Bool("print") {
		for _, t := range targets {
			y, err := overlaycheck.YAML(fs, t)
			if err != nil {
				return err
			}
			fmt.Fprintf(cctx.App.Writer, "# %s\n---\n%s", t, y)
		}
		return nil
	}
	policy, err := overlaycheck.LoadPolicy(root)
	if err != nil {
		return err
	}
	failed := 0
	for _, t := range targets {
		rel, _ := filepath.Rel(root, t)
		objs, problems, err := overlaycheck.CheckDir(fs, t, policy)
		if err != nil {
			fmt.Fprintf(cctx.App.Writer, "%s: %v\n", rel, err)
			failed++
			continue
		}
		for _, p := range problems {
			fmt.Fprintf(cctx.App.Writer, "%s: %s\n", rel, p)
		}
		if len(problems) > 0 {
			failed++
			continue
		}
		fmt.Fprintf(cctx.App.Writer, "%s: ok (%d objects)\n", rel, len(objs))
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d targets failed", failed, len(targets))
	}
	return nil
}
