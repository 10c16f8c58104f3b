// Package app wires the flowagent service: its settings and its Run.
package app

import (
	"context"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

// Config is every setting of flowagent, read from ZONETOLL_* variables.
type Config struct {
	servicecmd.Common
	Kube kubeclient.Config
}

// Validate checks relations between settings that envconfig cannot.
func (c *Config) Validate() error { return c.Kube.Validate("ZONETOLL_KUBE_") }

// Spec is the flowagent command line.
func Spec() servicecmd.Spec[Config] {
	return servicecmd.Spec[Config]{
		Name:       "flowagent",
		Usage:      "counts the bytes this node sends per address pair with eBPF and reports them to its zone's flowserver",
		Run:        Run,
		Kubernetes: true,
	}
}

// Run serves the shared endpoints until ctx is done. The service's own work arrives with issue #6.
func Run(ctx context.Context, cfg *Config, env servicecmd.Env) error {
	env.Logger.Info("serving health and metrics endpoints only: the flowagent logic is not built yet (issue #6)")
	<-ctx.Done()
	return nil
}
