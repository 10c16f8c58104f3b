// Command costcalc turns cross-zone bytes into dollars with each cloud's prices.
package main

import (
	"context"
	"os"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/app"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

func main() {
	os.Exit(servicecmd.Main(context.Background(), app.Spec(), os.Args))
}
