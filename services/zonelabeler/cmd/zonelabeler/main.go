// Command zonelabeler copies each node's zone and region labels onto its pods.
package main

import (
	"context"
	"os"

	"github.com/zonetoll/zonetoll/services/zonelabeler/internal/app"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

func main() {
	os.Exit(servicecmd.Main(context.Background(), app.Spec(), os.Args))
}
