package main

import (
	"context"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/testkit/internal/buildcmd"
	"github.com/zonetoll/zonetoll/testkit/vmagent"
)

func newApp() *cli.App {
	return buildcmd.App(buildcmd.Tool{
		Name:  "vmagent",
		Usage: "build upstream vmagent " + vmagent.Version + " for zonetoll's per-zone example test",
		What:  "vmagent",
		Build: func(ctx context.Context, force bool, progress io.Writer) (string, error) {
			st, err := vmagent.Build(ctx, vmagent.BuildOptions{Force: force, Progress: progress})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("vmagent %s built with %s in %.0f s", st.Version, st.GoVersion, st.BuildSeconds), nil
		},
		Paths: func() ([]string, error) {
			bin, err := vmagent.Installed("")
			return []string{bin}, err
		},
	})
}
