// Package services answers "which Service was this byte for?": it indexes the cluster's EndpointSlices
// by endpoint address, so a flow's destination (a pod address, after kube-proxy's DNAT) is attributed
// to the Service(s) whose slices list it, and keeps what the Service view needs of every Service
// (type, headless, traffic distribution, topology annotations) and of its endpoints (ready, zone,
// hints). It is fed by client-go informers (informers.go) or directly by tests.
//
// The attribution rule (docs/flowserver.md, "Traffic per Service"):
//   - the non-headless Services whose slices list the address, names sorted and joined with "+";
//   - only headless Services list it: those, the same way (a headless Service listing the address
//     beside a non-headless one is ignored);
//   - no Service lists it: no attribution (the bytes stay in the traffic metrics only);
//   - slices without the kubernetes.io/service-name label are ignored.
//
// Every endpoint a slice lists counts for attribution, ready or not: a terminating pod still serves
// the connections it has, and those bytes are the Service's. Readiness only matters for the gauges.
package services

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"unique"

	"github.com/zonetoll/zonetoll/shared/report"
)

// Key names a Service or an EndpointSlice.
type Key struct{ Namespace, Name string }

func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Target is what bytes to an address are attributed to: the namespace and service label values of
// zonetoll_service_traffic_bytes_total. Several Services are joined with "+" (namespaces too, in the
// rare case of Services of several namespaces listing one address).
type Target struct{ Namespace, Service string }

// ServiceState is what the index keeps of a Service.
type ServiceState struct {
	Namespace, Name string
	// Type is spec.type: ClusterIP, NodePort, LoadBalancer or ExternalName.
	Type string
	// Headless is spec.clusterIP None.
	Headless bool
	// TrafficDistribution is spec.trafficDistribution, "" when unset.
	TrafficDistribution string
	// TopologyMode is the service.kubernetes.io/topology-mode annotation, else the older
	// service.kubernetes.io/topology-aware-hints, else "".
	TopologyMode string
	// InternalTrafficPolicy is spec.internalTrafficPolicy (Local, Cluster), "" when unset.
	InternalTrafficPolicy string
}

// SliceState is what the index keeps of an EndpointSlice.
type SliceState struct {
	Namespace, Name string
	// Service is the kubernetes.io/service-name label; a slice without it is ignored.
	Service string
	// HeadlessLabel is the service.kubernetes.io/headless label the EndpointSlice controller puts on
	// the slices of headless Services; it decides headlessness while the Service itself is not known.
	HeadlessLabel bool
	Endpoints     []EndpointState
}

// EndpointState is one endpoint of a slice.
type EndpointState struct {
	Addrs []netip.Addr
	// Ready is conditions.ready, true when unset.
	Ready bool
	// Zone is endpoint.zone, "" when unset; Node is nodeName, for the node's zone instead.
	Zone, Node string
	// ForZones are the zones of hints.forZones.
	ForZones []string
	// Ref identifies the endpoint across the slices of its Service: "pod:<namespace>/<name>" from its
	// targetRef, else its first address. A dual-stack pod is listed in an IPv4 and an IPv6 slice and
	// is still one endpoint.
	Ref string
}

// Index maps endpoint addresses to Services. The zero value is not usable; use New.
type Index struct {
	mu       sync.RWMutex
	services map[Key]*ServiceState
	slices   map[Key]*sliceRecord
	bySvc    map[Key]map[*sliceRecord]struct{}
	// refs counts, per address, the endpoints of each Service's slices that list it.
	refs map[report.Addr]map[Key]int
	// attr is the attribution of every listed address, recomputed when anything it depends on
	// changes, so the per-flow lookup is one map read.
	attr map[report.Addr]unique.Handle[Target]
}

type sliceRecord struct {
	key   Key
	svc   Key
	state SliceState
	addrs []report.Addr // every address of every endpoint, duplicates kept (they are counted)
}

// New returns an empty Index.
func New() *Index {
	return &Index{
		services: map[Key]*ServiceState{},
		slices:   map[Key]*sliceRecord{},
		bySvc:    map[Key]map[*sliceRecord]struct{}{},
		refs:     map[report.Addr]map[Key]int{},
		attr:     map[report.Addr]unique.Handle[Target]{},
	}
}

// View looks addresses up under one read lock, so a report's flows see one consistent state.
type View struct{ x *Index }

// Read calls fn with a View valid only during the call; on a nil Index the View finds nothing. Lock
// order: callers that also hold the resolver's read lock take it first (ingest does); nothing takes
// them the other way round.
func (x *Index) Read(fn func(View)) {
	if x == nil {
		fn(View{})
		return
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	fn(View{x})
}

// Lookup returns the Service(s) bytes sent to a are attributed to, ok false when no Service's slice
// lists a.
func (v View) Lookup(a report.Addr) (t unique.Handle[Target], ok bool) {
	if v.x == nil {
		return t, false
	}
	t, ok = v.x.attr[a]
	return t, ok
}

// Lookup is View.Lookup under its own read lock.
func (x *Index) Lookup(a netip.Addr) (Target, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	t, ok := x.attr[report.AddrFrom(a)]
	if !ok {
		return Target{}, false
	}
	return t.Value(), true
}

// UpsertService records a Service's current state.
func (x *Index) UpsertService(s ServiceState) {
	k := Key{s.Namespace, s.Name}
	x.mu.Lock()
	defer x.mu.Unlock()
	before := x.headless(k)
	c := s
	x.services[k] = &c
	if x.headless(k) != before {
		x.recomputeService(k)
	}
}

// DeleteService forgets a Service. Its slices stay until they are deleted themselves (the garbage
// collector deletes them after the Service).
func (x *Index) DeleteService(namespace, name string) {
	k := Key{namespace, name}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.services[k]; !ok {
		return
	}
	before := x.headless(k)
	delete(x.services, k)
	if x.headless(k) != before {
		x.recomputeService(k)
	}
}

// UpsertSlice records an EndpointSlice's current state.
func (x *Index) UpsertSlice(s SliceState) {
	k := Key{s.Namespace, s.Name}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.replaceSlice(k, &s)
}

// DeleteSlice forgets an EndpointSlice.
func (x *Index) DeleteSlice(namespace, name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.replaceSlice(Key{namespace, name}, nil)
}

// replaceSlice swaps a slice's record for s (nil: removes it) and recomputes the attribution of every
// address the old or new slice lists, and of all the Service's addresses if its headlessness changed
// with the slice's label. Called with mu held.
func (x *Index) replaceSlice(k Key, s *SliceState) {
	touched := map[report.Addr]struct{}{}
	headlessBefore := map[Key]bool{}
	old := x.slices[k]
	if old != nil {
		headlessBefore[old.svc] = x.headless(old.svc)
		for _, a := range old.addrs {
			touched[a] = struct{}{}
			m := x.refs[a]
			if m[old.svc]--; m[old.svc] <= 0 {
				delete(m, old.svc)
			}
			if len(m) == 0 {
				delete(x.refs, a)
			}
		}
		delete(x.bySvc[old.svc], old)
		if len(x.bySvc[old.svc]) == 0 {
			delete(x.bySvc, old.svc)
		}
		delete(x.slices, k)
	}
	if s != nil && s.Service != "" {
		r := &sliceRecord{key: k, svc: Key{s.Namespace, s.Service}, state: *s}
		if _, seen := headlessBefore[r.svc]; !seen {
			headlessBefore[r.svc] = x.headless(r.svc)
		}
		for _, ep := range s.Endpoints {
			for _, ip := range ep.Addrs {
				if ip.IsValid() {
					r.addrs = append(r.addrs, report.AddrFrom(ip))
				}
			}
		}
		for _, a := range r.addrs {
			touched[a] = struct{}{}
			m := x.refs[a]
			if m == nil {
				m = map[Key]int{}
				x.refs[a] = m
			}
			m[r.svc]++
		}
		x.slices[k] = r
		if x.bySvc[r.svc] == nil {
			x.bySvc[r.svc] = map[*sliceRecord]struct{}{}
		}
		x.bySvc[r.svc][r] = struct{}{}
	}
	for svc, before := range headlessBefore {
		if x.headless(svc) != before {
			x.recomputeService(svc)
		}
	}
	for a := range touched {
		x.recompute(a)
	}
}

// headless says whether a Service is headless: from the Service when it is known, else from its
// slices' label. Called with mu held.
func (x *Index) headless(k Key) bool {
	if s := x.services[k]; s != nil {
		return s.Headless
	}
	for r := range x.bySvc[k] {
		if r.state.HeadlessLabel {
			return true
		}
	}
	return false
}

// recomputeService recomputes every address a Service's slices list. Called with mu held.
func (x *Index) recomputeService(k Key) {
	for r := range x.bySvc[k] {
		for _, a := range r.addrs {
			x.recompute(a)
		}
	}
}

// recompute applies the attribution rule to one address. Called with mu held.
func (x *Index) recompute(a report.Addr) {
	m := x.refs[a]
	if len(m) == 0 {
		delete(x.attr, a)
		return
	}
	var plain, headless []Key
	for k := range m {
		if x.headless(k) {
			headless = append(headless, k)
		} else {
			plain = append(plain, k)
		}
	}
	chosen := plain
	if len(chosen) == 0 {
		chosen = headless
	}
	x.attr[a] = unique.Make(join(chosen))
}

// join names a set of Services: names sorted (by namespace, then name) and joined with "+", and
// their distinct namespaces likewise.
func join(keys []Key) Target {
	slices.SortFunc(keys, func(a, b Key) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	names := make([]string, len(keys))
	var namespaces []string
	for i, k := range keys {
		names[i] = k.Name
		if len(namespaces) == 0 || namespaces[len(namespaces)-1] != k.Namespace {
			namespaces = append(namespaces, k.Namespace)
		}
	}
	return Target{Namespace: strings.Join(namespaces, "+"), Service: strings.Join(names, "+")}
}

// Stats are the sizes of the index's tables.
type Stats struct {
	Services, Slices, Addresses int
}

// Stats returns the current table sizes.
func (x *Index) Stats() Stats {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return Stats{Services: len(x.services), Slices: len(x.slices), Addresses: len(x.attr)}
}
