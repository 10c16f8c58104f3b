// Package app wires the costcalc service: its settings and its Run.
package app

import (
	"context"

	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

// Config is every setting of costcalc, read from ZONETOLL_* variables.
type Config struct {
	servicecmd.Common
}

// Spec is the costcalc command line.
func Spec() servicecmd.Spec[Config] {
	return servicecmd.Spec[Config]{
		Name:       "costcalc",
		Usage:      "turns cross-zone bytes into dollars with each cloud's prices",
		Run:        Run,
		Kubernetes: false,
	}
}

// Run serves the shared endpoints until ctx is done. The service's own work arrives with issue #8.
func Run(ctx context.Context, cfg *Config, env servicecmd.Env) error {
	env.Started()
	env.Logger.Info("serving health and metrics endpoints only: the costcalc logic is not built yet (issue #8)")
	<-ctx.Done()
	return nil
}
