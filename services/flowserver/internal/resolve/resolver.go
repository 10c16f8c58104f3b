package resolve

import (
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/zonetoll/zonetoll/shared/report"
)

// clockSlack widens every pod lifetime when it is matched against a report window: creation
// timestamps have one-second resolution, and the agent's clock is not the API server's.
const clockSlack = 2 * time.Second

// Options configure a Resolver.
type Options struct {
	// CIDRs are the configured ranges (see LoadCIDRs).
	CIDRs []CIDR
	// GoneCapacity is how many addresses of deleted or finished pods are remembered.
	GoneCapacity int
}

// Resolver maps addresses to endpoints. Its tables are fed by the informer handlers in informers.go
// (or directly by tests through the Upsert/Delete methods) and read by Resolve.
type Resolver struct {
	mu sync.RWMutex
	// live holds the pods that have an IP and have not finished, by each of their IPs.
	live  map[report.Addr][]*podRecord
	pods  map[string]*podRecord // by namespace/name
	nodes map[string]*nodeRecord
	// nodeIPs maps every address of every node to the node.
	nodeIPs map[report.Addr]*nodeRecord
	// gone remembers deleted and finished pods by IP, newest first, for late reports.
	gone  *lru.Cache[report.Addr, []*podRecord]
	cidrs *cidrTable
	// owners answers which Deployment owns a ReplicaSet and which CronJob a Job; nil means unknown.
	owners OwnerLookup
	// gen invalidates every pod's memoized endpoint when something it depends on changes: its node's
	// location, or an owner ReplicaSet's or Job's controller.
	gen atomic.Uint64

	external *Endpoint
}

// OwnerLookup returns the controller (kind, name) of a ReplicaSet or Job, ok false when the object
// is not known or has no controller.
type OwnerLookup func(kind, namespace, name string) (ownerKind, ownerName string, ok bool)

// podRecord is what the resolver keeps of a pod.
type podRecord struct {
	namespace, name string
	node            string
	ownerKind       string // the controller owner; empty for a bare pod
	ownerName       string
	templateHash    string // the pod-template-hash label, to name a Deployment before its ReplicaSet is cached
	ips             []report.Addr
	died            bool // deleted, or finished so its IP may be another pod's
	// from and to bound the time the pod held its IPs, in Unix nanoseconds, widened by clockSlack;
	// to is math.MaxInt64 while the pod lives.
	from, to int64
	memo     atomic.Pointer[memo]
}

type memo struct {
	gen uint64
	ep  *Endpoint
}

type nodeRecord struct {
	name         string
	zone, region string
	ips          []report.Addr
	ep           *Endpoint
}

// New returns an empty Resolver.
func New(opts Options) (*Resolver, error) {
	t, err := newCIDRTable(opts.CIDRs)
	if err != nil {
		return nil, err
	}
	if opts.GoneCapacity <= 0 {
		opts.GoneCapacity = 65536
	}
	gone, err := lru.New[report.Addr, []*podRecord](opts.GoneCapacity)
	if err != nil {
		return nil, err
	}
	return &Resolver{
		live:     map[report.Addr][]*podRecord{},
		pods:     map[string]*podRecord{},
		nodes:    map[string]*nodeRecord{},
		nodeIPs:  map[report.Addr]*nodeRecord{},
		gone:     gone,
		cidrs:    t,
		external: &Endpoint{Workload: unique.Make(Workload{Kind: KindExternal}), Source: SourceExternal},
	}, nil
}

// SetOwnerLookup sets how ReplicaSet and Job owners are found.
func (r *Resolver) SetOwnerLookup(f OwnerLookup) {
	r.mu.Lock()
	r.owners = f
	r.mu.Unlock()
	r.Invalidate()
}

// Invalidate drops every memoized pod endpoint, e.g. after an owner changed.
func (r *Resolver) Invalidate() { r.gen.Add(1) }

// View resolves addresses under one read lock, so a report's flows see one consistent state.
type View struct{ r *Resolver }

// Read calls fn with a View valid only during the call.
func (r *Resolver) Read(fn func(View)) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	fn(View{r})
}

// Resolve returns what a held during [start, end]; it never returns nil.
func (v View) Resolve(a report.Addr, start, end time.Time) *Endpoint {
	r := v.r
	w := window{start.UnixNano(), end.UnixNano()}
	live := r.live[a]
	// The common case: one pod holds the address and held it through the whole window.
	if len(live) == 1 && live[0].from <= w.start {
		return r.podEndpoint(live[0])
	}
	p, covers := bestPod(live, nil, w)
	if !covers {
		// The address may have belonged to a pod that is gone now: a late report, or a reused IP.
		if gone, ok := r.gone.Peek(a); ok {
			p, _ = bestPod(live, gone, w)
		}
	}
	if p != nil {
		return r.podEndpoint(p)
	}
	if n := r.nodeIPs[a]; n != nil {
		return n.ep
	}
	if ep := r.cidrs.lookup(netip.AddrFrom16(a)); ep != nil {
		return ep
	}
	return r.external
}

// window is a report window in Unix nanoseconds.
type window struct{ start, end int64 }

// NodeZone returns the zone of a node, ok false if the node is unknown.
func (v View) NodeZone(name string) (zone string, ok bool) {
	n := v.r.nodes[name]
	if n == nil {
		return "", false
	}
	return n.zone, true
}

// bestPod picks, among the pods that held an address, the one whose lifetime overlaps the window
// most; nil if none overlaps it at all (even with clockSlack). A window that spans an IP's reuse
// goes to the pod that held it longer within the window, a tie to the newer pod. covers reports
// that the pick held the address for the whole window, so no other pod can beat it.
func bestPod(live, gone []*podRecord, w window) (best *podRecord, covers bool) {
	bestOverlap := int64(-1)
	for _, list := range [2][]*podRecord{live, gone} {
		for _, p := range list {
			lo, hi := max(p.from, w.start), min(p.to, w.end)
			if hi < lo {
				continue
			}
			if overlap := hi - lo; overlap > bestOverlap || (overlap == bestOverlap && best != nil && p.from > best.from) {
				best, bestOverlap = p, overlap
				covers = p.from <= w.start && p.to >= w.end
			}
		}
	}
	return best, covers
}

// podEndpoint returns p's endpoint, computing it when the memo is stale. Concurrent readers may
// compute it twice; both results are equal.
func (r *Resolver) podEndpoint(p *podRecord) *Endpoint {
	gen := r.gen.Load()
	if m := p.memo.Load(); m != nil && m.gen == gen {
		return m.ep
	}
	w := Workload{Namespace: p.namespace}
	w.Kind, w.Name = r.workloadOf(p)
	ep := &Endpoint{Pod: unique.Make(PodKey{p.namespace, p.name}), Node: p.node, Source: SourcePod}
	if p.died {
		ep.Source = SourceDeletedPod
	}
	switch n := r.nodes[p.node]; {
	case n == nil:
		ep.NoZone = "node_unknown"
	case n.zone == "":
		ep.NoZone = "no_zone_label"
	default:
		w.Zone, w.Region = n.zone, n.region
	}
	ep.Workload = unique.Make(w)
	p.memo.Store(&memo{gen: gen, ep: ep})
	return ep
}

// workloadOf names the workload a pod belongs to: a Deployment through its ReplicaSet, a CronJob
// through its Job, a StatefulSet or DaemonSet (or any other controller) directly, or the pod itself.
func (r *Resolver) workloadOf(p *podRecord) (kind, name string) {
	switch p.ownerKind {
	case "":
		return KindPod, p.name
	case "Node": // the mirror pod of a static pod
		return KindPod, p.name
	case "ReplicaSet":
		if r.owners != nil {
			if k, n, ok := r.owners("ReplicaSet", p.namespace, p.ownerName); ok {
				return strings.ToLower(k), n
			}
		}
		// The ReplicaSet is not cached (yet): a Deployment names its ReplicaSets <deployment>-<hash>,
		// with the same hash as the pod's pod-template-hash label.
		if p.templateHash != "" {
			if d, ok := strings.CutSuffix(p.ownerName, "-"+p.templateHash); ok && d != "" {
				return "deployment", d
			}
		}
		return "replicaset", p.ownerName
	case "Job":
		if r.owners != nil {
			if k, n, ok := r.owners("Job", p.namespace, p.ownerName); ok {
				return strings.ToLower(k), n
			}
		}
		return "job", p.ownerName
	default:
		return strings.ToLower(p.ownerKind), p.ownerName
	}
}

// PodState is what the resolver needs of a pod.
type PodState struct {
	Namespace, Name string
	Node            string
	HostNetwork     bool
	OwnerKind       string
	OwnerName       string
	TemplateHash    string
	IPs             []netip.Addr
	Created         time.Time
	Finished        bool // phase Succeeded or Failed: its IP may already belong to another pod
}

// UpsertPod records a pod's current state; now is when it was observed.
func (r *Resolver) UpsertPod(s PodState, now time.Time) {
	key := s.Namespace + "/" + s.Name
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.pods[key]
	if old != nil && old.died {
		return // finished pods do not come back to life
	}
	ips := make([]report.Addr, 0, len(s.IPs))
	if !s.HostNetwork {
		for _, ip := range s.IPs {
			if ip.IsValid() {
				ips = append(ips, report.AddrFrom(ip))
			}
		}
	}
	if old != nil && old.node == s.Node && old.ownerName == s.OwnerName && old.ownerKind == s.OwnerKind &&
		sameAddrs(old.ips, ips) && !s.Finished {
		return
	}
	if old != nil {
		r.removeLive(old)
	}
	p := &podRecord{
		namespace: s.Namespace, name: s.Name, node: s.Node,
		ownerKind: s.OwnerKind, ownerName: s.OwnerName, templateHash: s.TemplateHash,
		ips: ips, from: s.Created.Add(-clockSlack).UnixNano(), to: math.MaxInt64,
	}
	r.pods[key] = p
	if s.Finished {
		r.retire(p, now)
		return
	}
	for _, a := range ips {
		r.live[a] = append(r.live[a], p)
	}
}

// DeletePod records that a pod is gone; now is when it was observed.
func (r *Resolver) DeletePod(namespace, name string, now time.Time) {
	key := namespace + "/" + name
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.pods[key]
	if p == nil {
		return
	}
	delete(r.pods, key)
	if !p.died {
		r.removeLive(p)
		r.retire(p, now)
	}
}

// retire moves a pod to the recently-gone cache. Called with mu held.
func (r *Resolver) retire(p *podRecord, now time.Time) {
	p.died = true
	p.to = now.Add(clockSlack).UnixNano()
	p.memo.Store(nil)
	for _, a := range p.ips {
		prev, _ := r.gone.Peek(a)
		// Newest first, and a few per address: an IP reused more often than that within the
		// cache's lifetime is attributed to its latest holders.
		list := append([]*podRecord{p}, prev...)
		if len(list) > 4 {
			list = list[:4]
		}
		r.gone.Add(a, list)
	}
}

func (r *Resolver) removeLive(p *podRecord) {
	for _, a := range p.ips {
		list := r.live[a]
		for i, q := range list {
			if q == p {
				list = append(list[:i:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(r.live, a)
		} else {
			r.live[a] = list
		}
	}
}

func sameAddrs(a, b []report.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// NodeState is what the resolver needs of a node.
type NodeState struct {
	Name         string
	Zone, Region string
	IPs          []netip.Addr
}

// UpsertNode records a node's location and addresses.
func (r *Resolver) UpsertNode(s NodeState) {
	ips := make([]report.Addr, 0, len(s.IPs))
	for _, ip := range s.IPs {
		if ip.IsValid() {
			ips = append(ips, report.AddrFrom(ip))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.nodes[s.Name]
	if old != nil && old.zone == s.Zone && old.region == s.Region && sameAddrs(old.ips, ips) {
		return
	}
	if old != nil {
		r.removeNodeIPs(old)
	}
	n := &nodeRecord{name: s.Name, zone: s.Zone, region: s.Region, ips: ips}
	n.ep = &Endpoint{
		Workload: unique.Make(Workload{Name: s.Name, Kind: KindNode, Zone: s.Zone, Region: s.Region}),
		Node:     s.Name,
		Source:   SourceNode,
	}
	if s.Zone == "" {
		n.ep.NoZone = "no_zone_label"
	}
	r.nodes[s.Name] = n
	for _, a := range ips {
		r.nodeIPs[a] = n
	}
	r.gen.Add(1) // pods on this node change zone with it
}

// DeleteNode forgets a node.
func (r *Resolver) DeleteNode(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := r.nodes[name]; n != nil {
		r.removeNodeIPs(n)
		delete(r.nodes, name)
		r.gen.Add(1)
	}
}

func (r *Resolver) removeNodeIPs(n *nodeRecord) {
	for _, a := range n.ips {
		if r.nodeIPs[a] == n {
			delete(r.nodeIPs, a)
		}
	}
}

// Zones returns the zone → region of every known node, for the zone info metric.
func (r *Resolver) Zones() map[string]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := map[string]string{}
	for _, n := range r.nodes {
		if n.zone != "" {
			out[n.zone] = n.region
		}
	}
	return out
}

// NodeZones returns the zone of every known node ("" for a node without one), for the endpoints of
// EndpointSlices that name their node but no zone.
func (r *Resolver) NodeZones() map[string]string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]string, len(r.nodes))
	for name, n := range r.nodes {
		out[name] = n.zone
	}
	return out
}

// Stats are the sizes of the resolver's tables.
type Stats struct {
	LivePods, GoneAddresses, Nodes int
}

// Stats returns the current table sizes.
func (r *Resolver) Stats() Stats {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return Stats{LivePods: len(r.pods), GoneAddresses: r.gone.Len(), Nodes: len(r.nodes)}
}
