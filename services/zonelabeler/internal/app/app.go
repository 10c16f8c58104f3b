// Package app wires the zonelabeler service: its settings, the controller and leader election.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/services/zonelabeler/internal/controller"
	"github.com/zonetoll/zonetoll/services/zonelabeler/internal/lease"
	"github.com/zonetoll/zonetoll/shared/config"
	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/metricdef"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

// Config is every setting of zonelabeler, read from ZONETOLL_* variables.
type Config struct {
	servicecmd.Common
	Kube              kubeclient.Config
	ZoneLabels        []string       `split_words:"true" default:"topology.kubernetes.io/zone" desc:"Pod label keys that get the node's zone (comma-separated; add your own key beside the well-known one)."`
	RegionLabels      []string       `split_words:"true" default:"topology.kubernetes.io/region" desc:"Pod label keys that get the node's region."`
	Namespaces        []string       `desc:"Only pods in these namespaces are labelled; empty means every namespace."`
	ExcludeNamespaces []string       `split_words:"true" desc:"Pods in these namespaces are never labelled."`
	PodSelector       string         `split_words:"true" desc:"Only pods matching this label selector are labelled (Kubernetes selector syntax, e.g. 'app in (a,b),!batch'); empty means all."`
	Workers           int            `default:"4" desc:"Pods labelled in parallel."`
	LeaderElection    LeaderElection `split_words:"true"`
}

// LeaderElection configures the Lease that lets two replicas run with one writing.
type LeaderElection struct {
	Enabled       bool          `default:"true" desc:"Take a coordination.k8s.io Lease before writing; turn off only with a single replica."`
	Namespace     string        `default:"zonetoll" desc:"Namespace of the Lease (set it to the pod's namespace)."`
	LeaseName     string        `split_words:"true" default:"zonelabeler" desc:"Name of the Lease."`
	Identity      string        `desc:"This replica's name in the Lease; empty means hostname plus a random suffix."`
	LeaseDuration time.Duration `split_words:"true" default:"15s" desc:"How long a lease holds without renewal before another replica may take it."`
	RenewDeadline time.Duration `split_words:"true" default:"10s" desc:"How long the leader keeps trying to renew before it stops writing."`
	RetryPeriod   time.Duration `split_words:"true" default:"2s" desc:"Interval between attempts to take or renew the lease."`
}

// Validate checks what envconfig cannot: label keys, the selector, and the lease timing.
func (c *Config) Validate() error {
	if err := c.Kube.Validate("ZONETOLL_KUBE_"); err != nil {
		return err
	}
	if len(c.ZoneLabels) == 0 {
		return config.Invalid("ZONETOLL_ZONE_LABELS", "", "at least one label key")
	}
	for key, list := range map[string][]string{"ZONETOLL_ZONE_LABELS": c.ZoneLabels, "ZONETOLL_REGION_LABELS": c.RegionLabels} {
		for _, k := range list {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				return config.Invalid(key, strings.Join(list, ","), "label keys such as topology.kubernetes.io/zone ("+strings.Join(errs, "; ")+")")
			}
		}
	}
	if _, err := labels.Parse(c.PodSelector); err != nil {
		return config.Invalid("ZONETOLL_POD_SELECTOR", c.PodSelector, "a Kubernetes label selector ("+err.Error()+")")
	}
	if c.Workers < 1 {
		return config.Invalid("ZONETOLL_WORKERS", fmt.Sprint(c.Workers), "an integer of at least 1")
	}
	le := c.LeaderElection
	if le.Enabled && !(le.RetryPeriod < le.RenewDeadline && le.RenewDeadline < le.LeaseDuration) {
		return config.Invalid("ZONETOLL_LEADER_ELECTION_RENEW_DEADLINE", le.RenewDeadline.String(),
			fmt.Sprintf("a duration between RETRY_PERIOD (%s) and LEASE_DURATION (%s)", le.RetryPeriod, le.LeaseDuration))
	}
	return nil
}

// Spec is the zonelabeler command line.
func Spec() servicecmd.Spec[Config] {
	return servicecmd.Spec[Config]{
		Name:       "zonelabeler",
		Usage:      "copies each node's zone and region labels onto its pods",
		Run:        Run,
		Kubernetes: true,
	}
}

// Run labels pods until ctx is done.
func Run(ctx context.Context, cfg *Config, env servicecmd.Env) error {
	rc, err := kubeclient.RESTConfig(env.Kubeconfig, cfg.Kube, env.Info.UserAgent())
	if err != nil {
		return err
	}
	clients, err := kubeclient.NewRESTClients(rc,
		kubeclient.Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme},
		kubeclient.Group{Version: coordinationv1.SchemeGroupVersion, AddToScheme: coordinationv1.AddToScheme})
	if err != nil {
		return err
	}
	core, coordination := clients[0], clients[1]
	ctrl, err := controller.New(core, controller.Options{
		ZoneLabels: cfg.ZoneLabels, RegionLabels: cfg.RegionLabels,
		Namespaces: cfg.Namespaces, ExcludeNamespaces: cfg.ExcludeNamespaces,
		PodSelector: cfg.PodSelector, Workers: cfg.Workers,
	}, env.Registry, env.Logger)
	if err != nil {
		return fmt.Errorf("creating controller: %w", err)
	}
	env.Server.AddReadinessCheck("informers-synced", func(context.Context) error {
		if !ctrl.Synced() {
			return errors.New("pod and node caches have not synced yet")
		}
		return nil
	})
	env.Started()
	var s metricdef.Set
	leader := s.Gauge("zonetoll_zonelabeler_leader", "1 while this replica holds the lease and writes labels, else 0.")
	if err := s.Register(env.Registry, "leader metric"); err != nil {
		return err
	}
	ctrl.Start(ctx)
	if !cfg.LeaderElection.Enabled {
		leader.Set(1)
		ctrl.RunWorkers(ctx)
		return nil
	}
	return runElected(ctx, coordination, cfg.LeaderElection, ctrl, leader, env)
}

// runElected runs the workers while this replica holds the lease. The lease package releases the lease
// only after the workers have stopped, so the next leader never overlaps a write of ours, and campaigns
// again after a lost lease.
func runElected(ctx context.Context, coordination rest.Interface, cfg LeaderElection, ctrl *controller.Controller, leader prometheus.Gauge, env servicecmd.Env) error {
	id := cfg.Identity
	if id == "" {
		host, _ := os.Hostname()
		suffix := make([]byte, 4)
		_, _ = rand.Read(suffix)
		id = host + "_" + hex.EncodeToString(suffix)
	}
	log := env.Logger.With("component", "leaderelection", "identity", id, "lease", cfg.Namespace+"/"+cfg.LeaseName)
	return lease.Run(ctx, lease.Config{
		Client:        coordination,
		Namespace:     cfg.Namespace,
		Name:          cfg.LeaseName,
		Identity:      id,
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		Log:           log,
	}, func(lctx context.Context) {
		log.Info("leading: labelling pods")
		leader.Set(1)
		ctrl.RunWorkers(lctx)
		leader.Set(0)
		log.Info("stopped labelling pods")
	})
}
