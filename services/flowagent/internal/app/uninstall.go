package app

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/urfave/cli/v2"
	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

// uninstallCommand removes what the agent leaves on a node on purpose: its
// program and links stay attached after the process exits, so a restart or
// an upgrade loses no byte (docs/bpf.md). Deleting the DaemonSet does not
// remove them; this does (docs/deploy.md, "Removing zonetoll").
func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "detach the counter's hooks on this node and remove its pinned program and maps (counts not yet reported are lost)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pin-dir", Value: counter.DefaultPinDir, EnvVars: []string{"ZONETOLL_BPF_PIN_DIR"},
				Usage: "bpffs directory the agent pinned its program, links and maps in"},
		},
		Action: func(c *cli.Context) error {
			dir := c.String("pin-dir")
			log := slog.New(slog.NewJSONHandler(c.App.ErrWriter, nil)).With("service", "flowagent", "command", "uninstall")
			err := counter.Uninstall(dir, log)
			if errors.Is(err, counter.ErrPinDirBusy) {
				return cli.Exit(fmt.Errorf("uninstalling from %s: an agent is running on it; stop it first: %w", dir, err), servicecmd.ExitFailure)
			}
			if err != nil {
				return cli.Exit(fmt.Errorf("uninstalling from %s: %w", dir, err), servicecmd.ExitFailure)
			}
			fmt.Fprintf(c.App.Writer, "removed zonetoll's hooks, program and maps from %s\n", dir)
			return nil
		},
	}
}
