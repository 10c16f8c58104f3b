package services

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, as in the contract of docs/metrics.md.
const (
	ReadyEndpointsName  = "zonetoll_service_ready_endpoints"
	HintedEndpointsName = "zonetoll_service_hinted_endpoints"
	InfoName            = "zonetoll_service_info"
)

// Endpoints summarises one Service's endpoints, for the gauges.
type Endpoints struct {
	Service Key
	// Ready counts ready endpoints by zone; every zone an endpoint of the Service is in has an entry,
	// 0 when none of them is ready.
	Ready map[string]int
	// Hinted counts ready endpoints by their zone and a zone their hints.forZones names.
	Hinted map[ZonePair]int
}

// ZonePair is an endpoint's zone and a zone its hints name.
type ZonePair struct{ Zone, ForZone string }

// Endpoints summarises the endpoints of every Service that has at least one. An endpoint's zone is
// endpoint.zone, else the zone of its nodeName in nodeZones, else "". An endpoint listed in several
// slices of its Service (dual-stack: one slice per address family; or during a slice update) counts
// once, ready if any listing says so. Endpoints without a pod targetRef (hand-written slices of a
// Service without selector) have nothing that ties an IPv4 listing to an IPv6 one, so they are counted
// per address family and each zone gets the larger family's count, as one dual-stack endpoint would.
func (x *Index) Endpoints(nodeZones map[string]string) []Endpoints {
	type merged struct {
		ready    bool
		zone     string
		forZones []string
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]Endpoints, 0, len(x.bySvc))
	for svc, recs := range x.bySvc {
		// eps[0] holds the endpoints with a pod targetRef, eps[1] and eps[2] the others by address
		// family (IPv4, IPv6).
		eps := [3]map[string]*merged{{}, {}, {}}
		n := 0
		for r := range recs {
			for i := range r.state.Endpoints {
				ep := &r.state.Endpoints[i]
				ref, set := ep.Ref, 0
				if ref == "" && len(ep.Addrs) > 0 {
					ref, set = ep.Addrs[0].String(), 1
					if ep.Addrs[0].Is6() && !ep.Addrs[0].Is4In6() {
						set = 2
					}
				}
				if ref == "" {
					continue
				}
				m := eps[set][ref]
				if m == nil {
					m = &merged{}
					eps[set][ref] = m
					n++
				}
				m.ready = m.ready || ep.Ready
				if m.zone == "" {
					m.zone = ep.Zone
					if m.zone == "" && ep.Node != "" {
						m.zone = nodeZones[ep.Node]
					}
				}
				for _, z := range ep.ForZones {
					if !slices.Contains(m.forZones, z) {
						m.forZones = append(m.forZones, z)
					}
				}
			}
		}
		if n == 0 {
			continue
		}
		var ready [3]map[string]int
		var hinted [3]map[ZonePair]int
		for set, ms := range eps {
			ready[set], hinted[set] = map[string]int{}, map[ZonePair]int{}
			for _, m := range ms {
				ready[set][m.zone] += 0
				if !m.ready {
					continue
				}
				ready[set][m.zone]++
				for _, z := range m.forZones {
					hinted[set][ZonePair{m.zone, z}]++
				}
			}
		}
		e := Endpoints{Service: svc, Ready: ready[0], Hinted: hinted[0]}
		for zone := range ready[1] {
			e.Ready[zone] += max(ready[1][zone], ready[2][zone])
		}
		for zone := range ready[2] {
			if _, done := ready[1][zone]; !done {
				e.Ready[zone] += ready[2][zone]
			}
		}
		for zp := range hinted[1] {
			e.Hinted[zp] += max(hinted[1][zp], hinted[2][zp])
		}
		for zp := range hinted[2] {
			if _, done := hinted[1][zp]; !done {
				e.Hinted[zp] += hinted[2][zp]
			}
		}
		out = append(out, e)
	}
	return out
}

// Services returns a copy of every known Service.
func (x *Index) Services() []ServiceState {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]ServiceState, 0, len(x.services))
	for _, s := range x.services {
		out = append(out, *s)
	}
	return out
}

// Collector exports the Service gauges, computed from the index at scrape time.
type Collector struct {
	idx *Index
	// nodeZones returns every known node's zone, for endpoints without endpoint.zone. It is called
	// before the index is read, never under its lock (see Index.Read for the lock order).
	nodeZones func() map[string]string

	ready, hinted, info *prometheus.Desc
}

// NewCollector returns the collector of idx's gauges.
func NewCollector(idx *Index, nodeZones func() map[string]string) *Collector {
	return &Collector{
		idx: idx, nodeZones: nodeZones,
		ready: prometheus.NewDesc(ReadyEndpointsName,
			"Ready endpoints (EndpointSlice conditions.ready true or unset) of a Service per zone (endpoint.zone, else its node's zone, else \"\"); a zone whose endpoints are all not ready shows 0.",
			[]string{"namespace", "service", "zone"}, nil),
		hinted: prometheus.NewDesc(HintedEndpointsName,
			"Ready endpoints of a Service in zone whose EndpointSlice hints.forZones name for_zone; absent when the slices carry no zone hints.",
			[]string{"namespace", "service", "zone", "for_zone"}, nil),
		info: prometheus.NewDesc(InfoName,
			"1 for every Service, with its type, whether it is headless, spec.trafficDistribution, the topology-mode (or older topology-aware-hints) annotation and spec.internalTrafficPolicy.",
			[]string{"namespace", "service", "type", "headless", "traffic_distribution", "topology_mode", "internal_traffic_policy"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.hinted
	ch <- c.info
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var zones map[string]string
	if c.nodeZones != nil {
		zones = c.nodeZones()
	}
	for _, e := range c.idx.Endpoints(zones) {
		for zone, n := range e.Ready {
			ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(n), e.Service.Namespace, e.Service.Name, zone)
		}
		for zp, n := range e.Hinted {
			ch <- prometheus.MustNewConstMetric(c.hinted, prometheus.GaugeValue, float64(n), e.Service.Namespace, e.Service.Name, zp.Zone, zp.ForZone)
		}
	}
	for _, s := range c.idx.Services() {
		headless := "false"
		if s.Headless {
			headless = "true"
		}
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1,
			s.Namespace, s.Name, s.Type, headless, s.TrafficDistribution, s.TopologyMode, s.InternalTrafficPolicy)
	}
}
