package tcfollow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/shared/metricdef"
)

type metrics struct {
	interfaces *prometheus.GaugeVec
	errors     prometheus.Counter
	overruns   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var ms metricdef.Set
	m := &metrics{
		interfaces: ms.GaugeVec("zonetoll_flowagent_tc_interfaces",
			"Interfaces the tc counter is attached to at egress, by why they are counted (uplink, overlay, pattern, listed).", "role"),
		errors: ms.Counter("zonetoll_flowagent_tc_attach_errors_total",
			"Failed attempts to attach the tc counter to an interface or let go of one; retried at the next link or route event."),
		overruns: ms.Counter("zonetoll_flowagent_tc_event_overruns_total",
			"Times the kernel dropped link and route events (socket buffer full); the next listing catches up."),
	}
	if reg == nil { // Start's caller keeps no metrics
		return m, nil
	}
	return m, ms.Register(reg, "tc follower metrics")
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
