// Command overlaycheck builds every zonetoll kustomize target and checks its invariants.
// See docs/deploy.md.
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
	defer stop()
	if err := newApp().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "overlaycheck:", err)
		os.Exit(1)
	}
}
