package tcfollow

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	interfaces *prometheus.GaugeVec
	errors     prometheus.Counter
	overruns   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		interfaces: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zonetoll_flowagent_tc_interfaces",
			Help: "Interfaces the tc counter is attached to at egress, by why they are counted (uplink, overlay, pattern, listed).",
		}, []string{"role"}),
		errors: f.NewCounter(prometheus.CounterOpts{
			Name: "zonetoll_flowagent_tc_attach_errors_total",
			Help: "Failed attempts to attach the tc counter to an interface or let go of one; retried at the next link or route event.",
		}),
		overruns: f.NewCounter(prometheus.CounterOpts{
			Name: "zonetoll_flowagent_tc_event_overruns_total",
			Help: "Times the kernel dropped link and route events (socket buffer full); the next listing catches up.",
		}),
	}
}

// set publishes how many interfaces are counted per role; every role is always present.
func (m *metrics) set(attached map[string]Target) {
	n := map[Role]int{RoleUplink: 0, RoleOverlay: 0, RolePattern: 0, RoleListed: 0}
	for _, t := range attached {
		n[t.Role]++
	}
	for r, c := range n {
		m.interfaces.WithLabelValues(string(r)).Set(float64(c))
	}
}
