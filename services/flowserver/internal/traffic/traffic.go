// Package traffic accumulates resolved flows into the flowserver's traffic counters and exposes them
// as Prometheus metrics: workload to workload, the zone matrix, the kubezonnet-compatible per-pod
// cross-zone bytes, and client workload to destination Service. It keeps its own maps instead of CounterVecs: a report is first summed into a
// Batch keyed by one-word handles (cheap per flow), then merged under one lock, and each metric has
// a series limit past which bytes go to an overflow series instead of being lost.
package traffic

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/services"
	"github.com/zonetoll/zonetoll/shared/metricdef"
)

// Overflow is the namespace, workload and kind label value of the series that takes the bytes of
// new series once a metric is at its limit. Zones are kept, so the overflow is still priced right.
const Overflow = "__overflow__"

// Metric names, as in the contract of docs/metrics.md.
const (
	PairBytesName    = "zonetoll_traffic_bytes_total"
	PairPacketsName  = "zonetoll_traffic_packets_total"
	ZoneBytesName    = "zonetoll_zone_traffic_bytes_total"
	ZonePacketsName  = "zonetoll_zone_traffic_packets_total"
	PodBytesName     = "pod_cross_zone_network_traffic_bytes_total"
	ServiceBytesName = "zonetoll_service_traffic_bytes_total"
)

// Metric family identifiers for the series limit and overflow metrics.
const (
	familyPairs = "zonetoll_traffic"
	familyZones = "zonetoll_zone_traffic"
	familyPods  = "pod_cross_zone_network_traffic"
	familySvcs  = "zonetoll_service_traffic"
)

type pairKey struct {
	src, dst unique.Handle[resolve.Workload]
}

type zoneKey struct{ src, dst string }

// svcKey is a series of the per-Service metric: client workload, Service(s), the endpoint's zone
// (as the traffic metric has it, so both split the same bytes the same way) and the direction.
type svcKey struct {
	src      unique.Handle[resolve.Workload] // the client
	svc      unique.Handle[services.Target]
	dstZone  string // the endpoint's zone
	response bool
}

// Directions of the per-Service metric: a request goes from a client to a Service's endpoint, a
// response from the endpoint back to a client.
const (
	DirectionRequest  = "request"
	DirectionResponse = "response"
)

// Counts are the bytes and packets of one series.
type Counts struct{ Bytes, Packets uint64 }

type entry struct {
	Counts
	updated time.Time
	// labels are built once, when the series is created: rebuilding and validating them on every
	// scrape was most of a scrape's cost at the series limit.
	labels []*dto.LabelPair
}

// Batch is one report's flows summed by workload pair and by cross-zone source pod. It is not safe
// for concurrent use; reuse it with Reset.
type Batch struct {
	// pairs indexes counts; both keep their capacity across Reset, so a reused Batch allocates
	// nothing per flow.
	pairs  map[pairKey]int
	counts []pairCounts
	pods   map[unique.Handle[resolve.PodKey]]uint64
	// svcs sums per-Service bytes by the flow's pair (an index into counts) and Service: two words,
	// cheap to hash per flow; Apply turns them into svcKeys.
	svcs map[batchSvcKey]uint64
}

// Pair identifies a flow's workload pair within one Batch, for AddService.
type Pair int32

type batchSvcKey struct {
	pair     Pair
	svc      unique.Handle[services.Target]
	response bool
}

type pairCounts struct {
	k pairKey
	Counts
}

// NewBatch returns an empty Batch.
func NewBatch() *Batch {
	return &Batch{pairs: map[pairKey]int{}, pods: map[unique.Handle[resolve.PodKey]]uint64{}, svcs: map[batchSvcKey]uint64{}}
}

// Reset empties b for reuse.
func (b *Batch) Reset() {
	clear(b.pairs)
	clear(b.counts) // drop the handles, so interned workloads nobody else holds can go
	b.counts = b.counts[:0]
	clear(b.pods)
	clear(b.svcs)
}

// Add counts one flow between two endpoints and returns its pair, for AddService.
func (b *Batch) Add(src, dst *resolve.Endpoint, bytes, packets uint64) Pair {
	k := pairKey{src.Workload, dst.Workload}
	i, ok := b.pairs[k]
	if !ok {
		i = len(b.counts)
		b.pairs[k] = i
		b.counts = append(b.counts, pairCounts{k: k})
	}
	c := &b.counts[i]
	c.add(bytes, packets)
	if src.IsPod() && CrossZone(src, dst) {
		b.pods[src.Pod] = SatAdd(b.pods[src.Pod], bytes)
	}
	return Pair(i)
}

// AddService counts the bytes of one flow, already counted with Add (which returned pair), once more
// by a Service: svc is what the services index attributes the destination address to (a request), or,
// with response, the source address (the endpoint answering a client no Service lists). The caller
// passes each flow at most once, so the per-Service bytes plus the rest (direct) are the traffic
// total. The series takes the client and the endpoint's zone from the pair, so both metrics split the
// same bytes the same way.
func (b *Batch) AddService(pair Pair, svc unique.Handle[services.Target], bytes uint64, response bool) {
	k := batchSvcKey{pair, svc, response}
	b.svcs[k] = SatAdd(b.svcs[k], bytes)
}

// SatAdd returns a+b, or the largest uint64 when the sum does not fit. A counter that wrapped would
// read as a reset to Prometheus and costcalc (rate() adds the whole new value back): one forged flow
// of 10^19 bytes would be billed as ~10^19 more. Saturated, it stays at its maximum, which an alert
// sees; the ingest path refuses such reports before they get here.
func SatAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

func (c *Counts) add(bytes, packets uint64) {
	c.Bytes = SatAdd(c.Bytes, bytes)
	c.Packets = SatAdd(c.Packets, packets)
}

// CrossZone reports whether traffic between two endpoints crosses a zone boundary: both zones known
// and different. Traffic with an endpoint of unknown zone (external, or a node without a zone label)
// is not cross-zone in this sense; costcalc prices internet egress from the kind.
func CrossZone(src, dst *resolve.Endpoint) bool {
	s, d := src.Zone(), dst.Zone()
	return s != "" && d != "" && s != d
}

// Options configure a Store.
type Options struct {
	// MaxSeries is the series limit of each metric (a workload pair counts once for bytes and
	// packets together).
	MaxSeries int
	// TTL removes series not updated for this long; zero keeps them forever.
	TTL time.Duration
}

// Store holds the counters. It is a prometheus.Collector.
type Store struct {
	opts Options

	mu    sync.Mutex
	pairs map[pairKey]*entry
	zones map[zoneKey]*entry
	pods  map[unique.Handle[resolve.PodKey]]*entry
	svcs  map[svcKey]*entry

	overflowBytes *prometheus.CounterVec
	expired       *prometheus.CounterVec
	series        *prometheus.Desc

	pairBytes, pairPackets, zoneBytes, zonePackets, podBytes, svcBytes *prometheus.Desc
}

// NewStore returns an empty Store whose own metrics (overflow, expiry) are registered on reg.
func NewStore(opts Options, reg prometheus.Registerer) (*Store, error) {
	pairLabels := []string{"src_namespace", "src_workload", "src_kind", "src_zone", "dst_namespace", "dst_workload", "dst_kind", "dst_zone"}
	families := []string{familyPairs, familyZones, familyPods, familySvcs}
	var own metricdef.Set
	s := &Store{
		opts:  opts,
		pairs: map[pairKey]*entry{},
		zones: map[zoneKey]*entry{},
		pods:  map[unique.Handle[resolve.PodKey]]*entry{},
		svcs:  map[svcKey]*entry{},
		overflowBytes: own.CounterVec("zonetoll_flowserver_series_overflow_bytes_total",
			"Bytes counted in a metric's overflow series because the metric was at its series limit (ZONETOLL_MAX_SERIES).",
			"metric", families...),
		expired: own.CounterVec("zonetoll_flowserver_series_expired_total",
			"Series removed because they were not updated for ZONETOLL_SERIES_TTL.",
			"metric", families...),
		series: prometheus.NewDesc("zonetoll_flowserver_series",
			"Series a traffic metric has now, against the limit ZONETOLL_MAX_SERIES.", []string{"metric"}, nil),
		pairBytes: prometheus.NewDesc(PairBytesName,
			"Layer-3 bytes (IP headers included) sent from a source workload to a destination workload, same-zone included.", pairLabels, nil),
		pairPackets: prometheus.NewDesc(PairPacketsName,
			"Packets sent from a source workload to a destination workload, same-zone included.", pairLabels, nil),
		zoneBytes: prometheus.NewDesc(ZoneBytesName,
			"Layer-3 bytes sent from one zone to another; same-zone traffic on the diagonal, \"\" for an unknown zone.", []string{"src_zone", "dst_zone"}, nil),
		zonePackets: prometheus.NewDesc(ZonePacketsName,
			"Packets sent from one zone to another.", []string{"src_zone", "dst_zone"}, nil),
		podBytes: prometheus.NewDesc(PodBytesName,
			"Layer-3 bytes a pod sent to another zone (kubezonnet-compatible).", []string{"namespace", "pod"}, nil),
		svcBytes: prometheus.NewDesc(ServiceBytesName,
			"Layer-3 bytes between a client workload (src_*) and the endpoints of a Service (namespace is the Service's; several Services listing one endpoint are joined with +), by the endpoint's zone (dst_zone) and direction: request (client to endpoint) or response (endpoint to a client no Service lists).",
			[]string{"src_namespace", "src_workload", "src_kind", "src_zone", "namespace", "service", "dst_zone", "direction"}, nil),
	}
	if err := own.Register(reg, "traffic store metrics"); err != nil {
		return nil, err
	}
	return s, nil
}

// Apply merges a batch into the counters.
func (s *Store) Apply(b *Batch, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range b.counts {
		k, c := b.counts[i].k, &b.counts[i].Counts
		e := s.pairs[k]
		if e == nil {
			if len(s.pairs) >= s.opts.MaxSeries {
				k = overflowPair(k)
				s.overflowBytes.WithLabelValues(familyPairs).Add(float64(c.Bytes))
				e = s.pairs[k]
			}
			if e == nil {
				src, dst := k.src.Value(), k.dst.Value()
				e = &entry{labels: labelPairs(
					"src_namespace", src.Namespace, "src_workload", src.Name, "src_kind", src.Kind, "src_zone", src.Zone,
					"dst_namespace", dst.Namespace, "dst_workload", dst.Name, "dst_kind", dst.Kind, "dst_zone", dst.Zone)}
				s.pairs[k] = e
			}
		}
		e.add(c.Bytes, c.Packets)
		e.updated = now

		zk := zoneKey{k.src.Value().Zone, k.dst.Value().Zone}
		z := s.zones[zk]
		if z == nil {
			if len(s.zones) >= s.opts.MaxSeries {
				// Zones are few; this only happens with absurd limits. The overflow series of the
				// zone matrix has no zones at all.
				zk = zoneKey{Overflow, Overflow}
				s.overflowBytes.WithLabelValues(familyZones).Add(float64(c.Bytes))
				z = s.zones[zk]
			}
			if z == nil {
				z = &entry{labels: labelPairs("src_zone", zk.src, "dst_zone", zk.dst)}
				s.zones[zk] = z
			}
		}
		z.add(c.Bytes, c.Packets)
		z.updated = now
	}
	for k, bytes := range b.pods {
		e := s.pods[k]
		if e == nil {
			if len(s.pods) >= s.opts.MaxSeries {
				k = overflowPod
				s.overflowBytes.WithLabelValues(familyPods).Add(float64(bytes))
				e = s.pods[k]
			}
			if e == nil {
				pk := k.Value()
				e = &entry{labels: labelPairs("namespace", pk.Namespace, "pod", pk.Name)}
				s.pods[k] = e
			}
		}
		e.Bytes = SatAdd(e.Bytes, bytes)
		e.updated = now
	}
	for bk, bytes := range b.svcs {
		pk := b.counts[bk.pair].k
		k := svcKey{pk.src, bk.svc, pk.dst.Value().Zone, false}
		if bk.response {
			k = svcKey{pk.dst, bk.svc, pk.src.Value().Zone, true}
		}
		e := s.svcs[k]
		if e == nil {
			if len(s.svcs) >= s.opts.MaxSeries {
				k = overflowSvc(k)
				s.overflowBytes.WithLabelValues(familySvcs).Add(float64(bytes))
				e = s.svcs[k]
			}
			if e == nil {
				src, svc := k.src.Value(), k.svc.Value()
				e = &entry{labels: labelPairs(
					"src_namespace", src.Namespace, "src_workload", src.Name, "src_kind", src.Kind, "src_zone", src.Zone,
					"namespace", svc.Namespace, "service", svc.Service, "dst_zone", k.dstZone, "direction", direction(k.response))}
				s.svcs[k] = e
			}
		}
		e.Bytes = SatAdd(e.Bytes, bytes)
		e.updated = now
	}
}

var overflowPod = unique.Make(resolve.PodKey{Namespace: Overflow, Name: Overflow})

func overflowPair(k pairKey) pairKey {
	src, dst := k.src.Value(), k.dst.Value()
	return pairKey{
		src: unique.Make(resolve.Workload{Namespace: Overflow, Name: Overflow, Kind: Overflow, Zone: src.Zone, Region: src.Region}),
		dst: unique.Make(resolve.Workload{Namespace: Overflow, Name: Overflow, Kind: Overflow, Zone: dst.Zone, Region: dst.Region}),
	}
}

var overflowTarget = unique.Make(services.Target{Namespace: Overflow, Service: Overflow})

// overflowSvc is the overflow series of a per-Service key: everything but the zones is __overflow__
// (the Service's namespace too, so the overflow is bounded by zone pairs alone).
func overflowSvc(k svcKey) svcKey {
	src := k.src.Value()
	return svcKey{
		src:      unique.Make(resolve.Workload{Namespace: Overflow, Name: Overflow, Kind: Overflow, Zone: src.Zone, Region: src.Region}),
		svc:      overflowTarget,
		dstZone:  k.dstZone,
		response: k.response,
	}
}

func direction(response bool) string {
	if response {
		return DirectionResponse
	}
	return DirectionRequest
}

func isOverflow(k pairKey) bool { return k.src.Value().Kind == Overflow }

// Expire removes series not updated since now-TTL. Overflow series stay: they hold bytes that have
// no other home.
func (s *Store) Expire(now time.Time) {
	if s.opts.TTL <= 0 {
		return
	}
	cutoff := now.Add(-s.opts.TTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	expire(s.pairs, cutoff, isOverflow, s.expired.WithLabelValues(familyPairs))
	expire(s.zones, cutoff, func(k zoneKey) bool { return k.src == Overflow }, s.expired.WithLabelValues(familyZones))
	expire(s.pods, cutoff, func(k unique.Handle[resolve.PodKey]) bool { return k == overflowPod }, s.expired.WithLabelValues(familyPods))
	expire(s.svcs, cutoff, func(k svcKey) bool { return k.svc == overflowTarget }, s.expired.WithLabelValues(familySvcs))
}

// expire removes from series those not updated since cutoff, except the overflow one, counting each
// on expired.
func expire[K comparable](series map[K]*entry, cutoff time.Time, overflow func(K) bool, expired prometheus.Counter) {
	for k, e := range series {
		if e.updated.Before(cutoff) && !overflow(k) {
			delete(series, k)
			expired.Inc()
		}
	}
}

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.pairBytes, s.pairPackets, s.zoneBytes, s.zonePackets, s.podBytes, s.svcBytes, s.series} {
		ch <- d
	}
}

// Collect implements prometheus.Collector. Values are copied under the lock and sent after it, so
// a scrape holds up ingestion only for the copy.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	s.mu.Lock()
	out := make([]series, 0, 2*len(s.pairs)+2*len(s.zones)+len(s.pods)+len(s.svcs))
	for _, e := range s.pairs {
		out = append(out, series{s.pairBytes, e.labels, float64(e.Bytes)}, series{s.pairPackets, e.labels, float64(e.Packets)})
	}
	for _, e := range s.zones {
		out = append(out, series{s.zoneBytes, e.labels, float64(e.Bytes)}, series{s.zonePackets, e.labels, float64(e.Packets)})
	}
	for _, e := range s.pods {
		out = append(out, series{s.podBytes, e.labels, float64(e.Bytes)})
	}
	for _, e := range s.svcs {
		out = append(out, series{s.svcBytes, e.labels, float64(e.Bytes)})
	}
	np, nz, nd, ns := len(s.pairs), len(s.zones), len(s.pods), len(s.svcs)
	s.mu.Unlock()

	for i := range out {
		ch <- &out[i]
	}
	ch <- prometheus.MustNewConstMetric(s.series, prometheus.GaugeValue, float64(np), familyPairs)
	ch <- prometheus.MustNewConstMetric(s.series, prometheus.GaugeValue, float64(nz), familyZones)
	ch <- prometheus.MustNewConstMetric(s.series, prometheus.GaugeValue, float64(nd), familyPods)
	ch <- prometheus.MustNewConstMetric(s.series, prometheus.GaugeValue, float64(ns), familySvcs)
}

// series is one counter sample with prebuilt labels; it implements prometheus.Metric.
type series struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair
	value  float64
}

func (m *series) Desc() *prometheus.Desc { return m.desc }

func (m *series) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Counter = &dto.Counter{Value: &m.value}
	return nil
}

// labelPairs builds the label pairs of a series from name, value, ... sorted by name, as the
// exposition wants them.
func labelPairs(nv ...string) []*dto.LabelPair {
	out := make([]*dto.LabelPair, 0, len(nv)/2)
	for i := 0; i < len(nv); i += 2 {
		out = append(out, &dto.LabelPair{Name: &nv[i], Value: &nv[i+1]})
	}
	slices.SortFunc(out, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}
