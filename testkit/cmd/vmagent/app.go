package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/testkit/vmagent"
)

func newApp() *cli.App {
	return &cli.App{
		Name:  "vmagent",
		Usage: "build upstream vmagent " + vmagent.Version + " for zonetoll's per-zone example test",
		Commands: []*cli.Command{
			{
				Name:  "build",
				Usage: "build vmagent from the Go module proxy into the cache (only the first build is slow)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "rebuild even if the cache is current"}},
				Action: func(cctx *cli.Context) error {
					st, err := vmagent.Build(cctx.Context, vmagent.BuildOptions{Force: cctx.Bool("force"), Progress: os.Stderr})
					if err != nil {
						return err
					}
					bin, err := vmagent.Installed("")
					if err != nil {
						return err
					}
					fmt.Fprintf(cctx.App.Writer, "vmagent %s built with %s in %.0f s:\n%s\n", st.Version, st.GoVersion, st.BuildSeconds, bin)
					return nil
				},
			},
			{
				Name:  "path",
				Usage: "print the path of vmagent, failing if it is not built",
				Action: func(cctx *cli.Context) error {
					bin, err := vmagent.Installed("")
					if err != nil {
						return err
					}
					fmt.Fprintln(cctx.App.Writer, bin)
					return nil
				},
			},
		},
	}
}
