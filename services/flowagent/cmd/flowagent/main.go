// Command flowagent counts the bytes this node sends per address pair with eBPF and reports them to its zone's flowserver.
package main

import (
	"context"
	"os"

	"github.com/zonetoll/zonetoll/services/flowagent/internal/app"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

func main() {
	os.Exit(servicecmd.Main(context.Background(), app.Spec(), os.Args))
}
