package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/tools/images"
)

func newApp() *cli.App {
	return &cli.App{
		Name:  "images",
		Usage: "build zonetoll's service images (static binary on an empty base) without a container engine",
		Commands: []*cli.Command{
			{
				Name:      "build",
				Usage:     "build the images of the named services (all when none is named) into OCI layouts <out>/<service>",
				ArgsUsage: "[service...]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Value: "out/images", Usage: "directory for the layouts (relative to the repository root)"},
					&cli.StringFlag{Name: "version", Usage: "version stamped into the binary and the labels (default: git describe --tags --always --dirty)"},
					&cli.StringFlag{Name: "revision", Usage: "git commit stamped into the binary and the labels (default: git rev-parse HEAD)"},
					&cli.StringFlag{Name: "repository", Value: "ghcr.io/zonetoll", Usage: "registry path of the image names in the tarballs"},
					&cli.StringFlag{Name: "arch", Usage: "GOARCH of the images (default: this machine's)"},
					&cli.BoolFlag{Name: "tarball", Usage: "also write <out>/<service>.tar, loadable with docker load or podman load"},
				},
				Action: build,
			},
		},
	}
}

func build(cctx *cli.Context) error {
	ctx := cctx.Context
	root, err := repo.Root(".")
	if err != nil {
		return err
	}
	opts := images.Options{RepoRoot: root, Version: cctx.String("version"), Revision: cctx.String("revision"),
		GOARCH: cctx.String("arch"), Stderr: os.Stderr}
	if opts.Version == "" || opts.Revision == "" {
		version, revision, err := servicebuild.GitStamp(ctx, root)
		if err != nil {
			return fmt.Errorf("%w (pass --version and --revision outside a git checkout)", err)
		}
		opts.Version = cmp.Or(opts.Version, version)
		opts.Revision = cmp.Or(opts.Revision, revision)
	}
	svcs := images.Services()
	if cctx.NArg() > 0 {
		svcs = nil
		for _, n := range cctx.Args().Slice() {
			s, err := images.Lookup(n)
			if err != nil {
				return err
			}
			svcs = append(svcs, s)
		}
	}
	out := cctx.String("out")
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	for _, s := range svcs {
		img, err := images.Build(ctx, opts, s)
		if err != nil {
			return err
		}
		dir := filepath.Join(out, s.Name)
		if err := images.WriteLayout(dir, opts.Version, img); err != nil {
			return err
		}
		digest, err := img.Digest()
		if err != nil {
			return fmt.Errorf("computing the %s digest: %w", s.Name, err)
		}
		ref := cctx.String("repository") + "/" + s.Name + ":" + opts.Version
		fmt.Fprintf(cctx.App.Writer, "%s\t%s@%s\toci:%s:%s\n", s.Name, ref, digest, dir, opts.Version)
		if cctx.Bool("tarball") {
			tag, err := name.NewTag(ref)
			if err != nil {
				return fmt.Errorf("naming the %s image %q: %w", s.Name, ref, err)
			}
			if err := tarball.WriteToFile(dir+".tar", tag, img); err != nil {
				return fmt.Errorf("writing %s.tar: %w", dir, err)
			}
		}
	}
	return nil
}
