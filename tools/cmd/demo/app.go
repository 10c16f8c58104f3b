package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/tools/demo"
)

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:      "demo",
		Usage:     "zonetoll on a local three-zone cluster: real kube-apiserver, network namespaces as nodes and pods, real services and traffic",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "phase1", Value: 40 * time.Second, Usage: "how long the application sends with the frontend calling every zone"},
			&cli.DurationFlag{Name: "phase2", Value: 20 * time.Second, Usage: "how long it sends with the frontend calling only its own zone"},
			&cli.DurationFlag{Name: "phase3", Value: 15 * time.Second, Usage: "with --routing: how long it sends after the last zone's only api pod turns not ready (the advice's risk); 0 skips it"},
			&cli.BoolFlag{Name: "no-restarts", Usage: "do not restart the agents, a flowserver and a costcalc run during phase 1"},
			&cli.BoolFlag{Name: "routing", Value: true, Usage: "route the frontend's calls through the api Service with a real kube-proxy per node; phase 2 applies the advice's patch (docs/demo.md); --routing=false: phase 2 changes the traffic generator instead"},
			&cli.BoolFlag{Name: "hold", Usage: "keep everything running after the summary until Ctrl-C (to browse Prometheus)"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the run directory (logs of every process, flow logs) after the run"},
			&cli.StringFlag{Name: "out", Usage: "directory for the HTML reports (default <user cache dir>/zonetoll/demo)"},
		},
		Action: func(c *cli.Context) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("the demo makes network namespaces and attaches BPF programs: run it as root (sudo make demo)")
			}
			root, err := repo.Root(".")
			if err != nil {
				return fmt.Errorf("%w: run the demo inside the zonetoll repository", err)
			}
			return demo.Main(c.Context, demo.MainOptions{
				Options:  demo.Options{Repo: root, OutDir: c.String("out"), KeepDir: c.Bool("keep"), Progress: stderr, Routing: c.Bool("routing")},
				Phase1:   c.Duration("phase1"),
				Phase2:   c.Duration("phase2"),
				Phase3:   c.Duration("phase3"),
				Restarts: !c.Bool("no-restarts"),
				Hold:     c.Bool("hold"),
				Out:      stdout,
			})
		},
	}
}
