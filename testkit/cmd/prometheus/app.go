package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/testkit/internal/buildcmd"
	"github.com/zonetoll/zonetoll/testkit/prometheus"
)

func newApp() *cli.App {
	return buildcmd.App(buildcmd.Tool{
		Name:  "prometheus",
		Usage: "build upstream prometheus and promtool " + prometheus.Version + " for zonetoll's config checks",
		What:  "prometheus and promtool",
		Build: func(ctx context.Context, force bool, progress io.Writer) (string, error) {
			st, err := prometheus.Build(ctx, prometheus.BuildOptions{Force: force, Progress: progress})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("prometheus %s (%s) built with %s", st.Version, st.ModuleVersion, st.GoVersion), nil
		},
		Paths: func() ([]string, error) {
			bins, err := prometheus.Installed("")
			return []string{bins.Prometheus, bins.Promtool}, err
		},
	})
}
