// Command flowserver authenticates agent reports, resolves addresses to workloads and zones, and exposes traffic metrics.
package main

import (
	"context"
	"os"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/app"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

func main() {
	os.Exit(servicecmd.Main(context.Background(), app.Spec(), os.Args))
}
