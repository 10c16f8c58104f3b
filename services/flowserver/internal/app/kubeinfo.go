package app

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/shared/kubeversion"
)

// kubernetesInfo exports zonetoll_kubernetes_info: the release of the API server, so costcalc's advice
// can name the routing setting that release accepts without asking the cluster itself.
type kubernetesInfo struct {
	desc *prometheus.Desc
	// labels are git_version, major, minor once discovered; nil until then (no series).
	labels atomic.Pointer[[3]string]
}

func newKubernetesInfo(reg prometheus.Registerer) (*kubernetesInfo, error) {
	k := &kubernetesInfo{desc: prometheus.NewDesc("zonetoll_kubernetes_info",
		"1, with the version of the Kubernetes API server this flowserver talks to (read at start).",
		[]string{"git_version", "major", "minor"}, nil)}
	if err := reg.Register(k); err != nil {
		return nil, fmt.Errorf("registering zonetoll_kubernetes_info: %w", err)
	}
	return k, nil
}

func (k *kubernetesInfo) Describe(ch chan<- *prometheus.Desc) { ch <- k.desc }

func (k *kubernetesInfo) Collect(ch chan<- prometheus.Metric) {
	if l := k.labels.Load(); l != nil {
		ch <- prometheus.MustNewConstMetric(k.desc, prometheus.GaugeValue, 1, l[0], l[1], l[2])
	}
}

// set records a server version (e.g. v1.37.2, v1.35.4-eks-1a2b3c).
func (k *kubernetesInfo) set(gitVersion string) error {
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return fmt.Errorf("%w %q: %w", kubeversion.ErrVersion, gitVersion, err)
	}
	k.labels.Store(&[3]string{gitVersion, strconv.FormatUint(uint64(v.Major()), 10), strconv.FormatUint(uint64(v.Minor()), 10)})
	return nil
}

// discoverRetry is how long discover waits after a failed attempt.
const discoverRetry = 30 * time.Second

// discover reads the API server's version once; until it succeeds it retries every discoverRetry
// (the metric is absent meanwhile), so an API server that is briefly unreachable at start does not
// leave the metric missing for the process's life.
func (k *kubernetesInfo) discover(ctx context.Context, c rest.Interface, log *slog.Logger) {
	for {
		td, err := kubeversion.Discover(ctx, c)
		if err == nil {
			err = k.set(td.ServerVersion)
		}
		if err == nil {
			log.Info("Kubernetes API server", "version", td.ServerVersion, "traffic_distribution_values", td.Values)
			return
		}
		log.Warn("reading the Kubernetes API server's version; zonetoll_kubernetes_info is absent until it succeeds", "error", err, "retry_in", discoverRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(discoverRetry):
		}
	}
}
