// Package resolve answers "whose address was this, at that time?": pod IP → pod → workload → node →
// zone, node IPs and host-network pods → node, configured CIDRs → their name and zone, anything else →
// external. It is fed by client-go informers and keeps recently gone pods by IP, so a report that
// arrives after a pod was deleted, or after its IP went to another pod, still names the right pod.
package resolve

import (
	"unique"
)

// Kinds of endpoints that are not the workload kind of a pod's owner.
const (
	KindPod      = "pod"      // a pod without a controller (or a static pod's mirror)
	KindNode     = "node"     // a node address, or a pod on the host network
	KindExternal = "external" // no pod, node or configured CIDR holds the address
)

// Source says how an address was resolved; it is the reason label of the resolution metrics.
type Source uint8

const (
	SourcePod        Source = iota // a pod that exists now
	SourceDeletedPod               // a pod that is gone (or finished), from the recently-gone cache
	SourceNode                     // a node address (host-network pods share it)
	SourceCIDR                     // a configured CIDR
	SourceExternal                 // nothing known holds it
	NumSources                     // the number of sources, for arrays indexed by Source
)

var sourceNames = [NumSources]string{"pod", "deleted_pod", "node", "cidr", "external"}

func (s Source) String() string { return sourceNames[s] }

// Sources lists every Source, for metrics that want each label value present from the start.
func Sources() []Source {
	out := make([]Source, NumSources)
	for i := range out {
		out[i] = Source(i)
	}
	return out
}

// Workload is the identity traffic is aggregated by: the metric labels of one side of a flow.
// Compare handles (unique.Make) rather than values: a handle is one word, so maps keyed by pairs of
// handles are cheap on the per-flow path, and handles nobody holds any more are collected.
type Workload struct {
	Namespace string
	Name      string
	Kind      string
	Zone      string
	Region    string
}

// PodKey names a pod, for the per-pod cross-zone metric.
type PodKey struct {
	Namespace, Name string
}

// Endpoint is what one address resolved to. Endpoints are shared and must not be modified.
type Endpoint struct {
	Workload unique.Handle[Workload]
	// Pod is set for pod endpoints (live or deleted); zero otherwise.
	Pod  unique.Handle[PodKey]
	Node string // the node of a pod, or the node itself; empty otherwise
	// Source says how the address was resolved.
	Source Source
	// NoZone is why a pod or node endpoint has no zone: "node_unknown" (the pod's node is not in the
	// cache) or "no_zone_label"; empty when the zone is known or does not apply (external).
	NoZone string
}

// IsPod reports whether the endpoint is a pod (live or deleted).
func (e *Endpoint) IsPod() bool { return e.Source == SourcePod || e.Source == SourceDeletedPod }

// Zone is the endpoint's zone, "" if unknown.
func (e *Endpoint) Zone() string { return e.Workload.Value().Zone }
