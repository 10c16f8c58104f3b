// Command demo runs zonetoll's local three-zone demo (make demo): see docs/demo.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr *os.File) int {
	if err := newApp(stdout, stderr).RunContext(ctx, args); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "demo: interrupted; everything it made is removed\n")
			return 130
		}
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	return 0
}
