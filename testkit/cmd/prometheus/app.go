package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/testkit/prometheus"
)

func newApp() *cli.App {
	return &cli.App{
		Name:  "prometheus",
		Usage: "build upstream prometheus and promtool " + prometheus.Version + " for zonetoll's config checks",
		Commands: []*cli.Command{
			{
				Name:  "build",
				Usage: "build prometheus and promtool from the Go module proxy into the cache (only the first build is slow)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "rebuild even if the cache is current"}},
				Action: func(cctx *cli.Context) error {
					st, err := prometheus.Build(cctx.Context, prometheus.BuildOptions{Force: cctx.Bool("force"), Progress: os.Stderr})
					if err != nil {
						return err
					}
					bins, err := prometheus.Installed("")
					if err != nil {
						return err
					}
					fmt.Fprintf(cctx.App.Writer, "prometheus %s (%s) built with %s:\n%s\n%s\n", st.Version, st.ModuleVersion, st.GoVersion, bins.Prometheus, bins.Promtool)
					return nil
				},
			},
			{
				Name:  "path",
				Usage: "print the paths of prometheus and promtool, failing if they are not built",
				Action: func(cctx *cli.Context) error {
					bins, err := prometheus.Installed("")
					if err != nil {
						return err
					}
					fmt.Fprintf(cctx.App.Writer, "%s\n%s\n", bins.Prometheus, bins.Promtool)
					return nil
				},
			},
		},
	}
}
