// Package buildcmd is the command line of the test kit's upstream builds (Prometheus and promtool,
// vmagent): `build` fills the cache, `path` prints where the binaries are.
package buildcmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Tool is one upstream build.
type Tool struct {
	Name  string // the command's name, e.g. "vmagent"
	Usage string // what the command builds and for what
	What  string // the binaries, as the subcommands' usage says them ("prometheus and promtool")
	// Build fills the cache (force rebuilds a current one), printing progress, and returns a line
	// saying what was built.
	Build func(ctx context.Context, force bool, progress io.Writer) (string, error)
	// Paths returns the built binaries, or an error saying how to build them.
	Paths func() ([]string, error)
}

// App is the command line of t.
func App(t Tool) *cli.App {
	return &cli.App{
		Name:  t.Name,
		Usage: t.Usage,
		Commands: []*cli.Command{
			{
				Name:  "build",
				Usage: "build " + t.What + " from the Go module proxy into the cache (only the first build is slow)",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "rebuild even if the cache is current"}},
				Action: func(cctx *cli.Context) error {
					built, err := t.Build(cctx.Context, cctx.Bool("force"), os.Stderr)
					if err != nil {
						return err
					}
					paths, err := t.Paths()
					if err != nil {
						return err
					}
					fmt.Fprintf(cctx.App.Writer, "%s:\n%s\n", built, strings.Join(paths, "\n"))
					return nil
				},
			},
			{
				Name:  "path",
				Usage: "print the paths of " + t.What + ", failing if not built",
				Action: func(cctx *cli.Context) error {
					paths, err := t.Paths()
					if err != nil {
						return err
					}
					fmt.Fprintln(cctx.App.Writer, strings.Join(paths, "\n"))
					return nil
				},
			},
		},
	}
}
