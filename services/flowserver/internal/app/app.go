// Package app wires the flowserver service: its settings and its Run.
package app

import (
	"context"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

// Config is every setting of flowserver, read from ZONETOLL_* variables.
type Config struct {
	servicecmd.Common
	Kube kubeclient.Config
}

// Validate checks relations between settings that envconfig cannot.
func (c *Config) Validate() error { return c.Kube.Validate("ZONETOLL_KUBE_") }

// Spec is the flowserver command line.
func Spec() servicecmd.Spec[Config] {
	return servicecmd.Spec[Config]{
		Name:       "flowserver",
		Usage:      "authenticates agent reports, resolves addresses to workloads and zones, and exposes traffic metrics",
		Run:        Run,
		Kubernetes: true,
	}
}

// Run serves the shared endpoints until ctx is done. The service's own work arrives with issue #7.
func Run(ctx context.Context, cfg *Config, env servicecmd.Env) error {
	env.Started()
	env.Logger.Info("serving health and metrics endpoints only: the flowserver logic is not built yet (issue #7)")
	<-ctx.Done()
	return nil
}
