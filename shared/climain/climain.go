// Package climain is the main function of the project's one-shot commands (the test cluster and
// Prometheus builds, images, overlaycheck): run a urfave/cli app until it returns or SIGINT/SIGTERM
// cancels its context, and turn its error into a line on stderr and exit status 1. Long-running
// services use servicecmd instead, which adds settings, logging and the exit codes of a service.
package climain

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"
)

// Main runs app with os.Args and exits with Run's status.
func Main(app *cli.App) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, app, os.Args, os.Stderr)
	stop()
	os.Exit(code)
}

// Run is Main without the process: it returns 0, or 1 after writing "<app name>: <error>" to stderr.
func Run(ctx context.Context, app *cli.App, args []string, stderr io.Writer) int {
	if err := app.RunContext(ctx, args); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", app.Name, err)
		return 1
	}
	return 0
}
