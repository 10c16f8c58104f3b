// Package demo runs zonetoll's local three-zone cluster: a real kube-apiserver (testkit/testcluster), nodes
// and pods as network namespaces wired like a native-routing CNI, the real zonelabeler, flowagent,
// flowserver and costcalc binaries, Debian's Prometheus, and a bounded UDP traffic generator whose counts
// are the ground truth the end-to-end test checks every figure against. `make demo` and the test run the
// same code.
package demo

import (
	"fmt"
	"net/netip"
)

// Kinds of workload as the flowserver names them (docs/flowserver.md, Resolution).
const (
	KindDeployment  = "deployment"
	KindStatefulSet = "statefulset"
	KindNode        = "node"
)

// Node is a Kubernetes node played by a network namespace with forwarding on.
type Node struct {
	Name   string
	Zone   string
	Index  int // 1..6: the third octet of its pods' subnet and the last of its underlay address
	IPv4   netip.Addr
	IPv6   netip.Addr
	Netns  string // namespace name under /run/netns
	MAC    string // of its underlay interface
	Prefix [2]netip.Prefix
}

// Pod is a pod with its own network namespace, or a host-network pod that uses its node's.
type Pod struct {
	Namespace   string
	Name        string
	Workload    string
	Kind        string // owner kind as the flowserver reports it
	OwnerKind   string // owner reference kind on the Pod object (ReplicaSet for a Deployment's pod)
	OwnerName   string
	Node        *Node
	HostNetwork bool
	Index       int // per node, from 1
	IPv4        netip.Addr
	IPv6        netip.Addr
	Netns       string
	MAC         string // of its eth0
	HostMAC     string // of the node's end of its veth
	HostIf      string // node's end of its veth
}

// External is a managed service outside the cluster in a configured CIDR with a zone (a managed cache or
// database): traffic to it is priced like traffic to a pod of that zone, and its answers are counted by
// nobody, since no agent runs where it sends from.
type External struct {
	Name   string
	Zone   string
	Region string
	CIDRs  []netip.Prefix
	IPv4   netip.Addr
	IPv6   netip.Addr
	Netns  string
	MAC    string
	// Underlay addresses the nodes route the CIDRs through.
	GatewayV4, GatewayV6 netip.Addr
}

// Model is the whole demo cluster: where every address lives and which workload owns it.
type Model struct {
	Prefix     string // netns name prefix: "ztdemo-<pid>-"
	Region     string
	Zones      []string
	Nodes      []*Node
	Pods       []*Pod
	Ext        External
	Underlay   string // netns holding the bridge every node is plugged into
	AppNS      string // Kubernetes namespace of the application
	Services   []*Service
	ByAddr     map[netip.Addr]Endpoint
	byNodeName map[string]*Node
}

// Service is a Service of the application and what its EndpointSlices list. There is no EndpointSlice
// controller in the test cluster: the demo writes the slices a real cluster's controller would (or, for a
// Service without selector, what its owner would write by hand).
type Service struct {
	Name     string
	Headless bool              // clusterIP None: clients pick endpoints from DNS
	Selector map[string]string // nil: no selector, the slices are hand-written
	Pods     []*Pod            // endpoints that are pods (targetRef, nodeName, the node's zone)
	Ext      *External         // an endpoint outside the cluster (zone from its configuration)
	Port     int32
}

// Addrs are the addresses the Service's EndpointSlices list.
func (s *Service) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range s.Pods {
		out = append(out, p.IPv4, p.IPv6)
	}
	if s.Ext != nil {
		out = append(out, s.Ext.IPv4, s.Ext.IPv6)
	}
	return out
}

// Endpoint is what the flowserver should resolve an address to.
type Endpoint struct {
	Namespace, Workload, Kind, Zone string
	Node                            *Node // nil outside the cluster
}

// Zones of the demo: AWS-style names, so each cloud's region convention would also recognise them.
var demoZones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// NewModel lays out 3 zones × 2 nodes and the application: a frontend Deployment with a pod in every
// zone (on the zone's first node), an api Deployment with a pod in every zone (on its second node), a
// postgres StatefulSet in the first zone, a host-network metrics-agent DaemonSet pod on the last zone's
// first node, and a managed cache outside the cluster in the last zone.
func NewModel(prefix string) *Model {
	m := &Model{Prefix: prefix, Region: "us-east-1", Zones: demoZones, Underlay: prefix + "ul", AppNS: "shop",
		ByAddr: map[netip.Addr]Endpoint{}, byNodeName: map[string]*Node{}}
	for zi, z := range m.Zones {
		for k := 1; k <= 2; k++ {
			i := zi*2 + k
			n := &Node{
				Name:  fmt.Sprintf("node-%c%d", 'a'+zi, k),
				Zone:  z,
				Index: i,
				IPv4:  netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}),
				IPv6:  netip.MustParseAddr(fmt.Sprintf("fd00::%d", 10+i)),
				MAC:   fmt.Sprintf("02:00:00:00:00:%02x", 10+i),
				Prefix: [2]netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i), 0}), 24),
					netip.MustParsePrefix(fmt.Sprintf("fd00:1:%d::/64", i))},
			}
			n.Netns = fmt.Sprintf("%s%c%d", prefix, 'a'+zi, k)
			m.Nodes = append(m.Nodes, n)
			m.byNodeName[n.Name] = n
			m.ByAddr[n.IPv4] = Endpoint{Workload: n.Name, Kind: KindNode, Zone: z, Node: n}
			m.ByAddr[n.IPv6] = Endpoint{Workload: n.Name, Kind: KindNode, Zone: z, Node: n}
		}
	}
	node := func(zone, k int) *Node { return m.Nodes[zone*2+k-1] }
	for zi := range m.Zones {
		m.addPod("frontend", KindDeployment, node(zi, 1), zi)
	}
	for zi := range m.Zones {
		m.addPod("api", KindDeployment, node(zi, 2), zi)
	}
	m.addPod("postgres", KindStatefulSet, node(0, 1), 0)
	// The host-network pod: its addresses are its node's, so the flowserver reports it as the node.
	agent := &Pod{Namespace: m.AppNS, Name: "metrics-agent-" + rand5(len(m.Pods)), Workload: node(2, 1).Name, Kind: KindNode,
		OwnerKind: "DaemonSet", OwnerName: "metrics-agent", Node: node(2, 1), HostNetwork: true,
		IPv4: node(2, 1).IPv4, IPv6: node(2, 1).IPv6, Netns: node(2, 1).Netns}
	m.Pods = append(m.Pods, agent)

	m.Ext = External{Name: "managed-cache", Zone: m.Zones[2], Region: m.Region,
		CIDRs: []netip.Prefix{netip.MustParsePrefix("198.19.200.0/24"), netip.MustParsePrefix("fd00:200::/64")},
		IPv4:  netip.MustParseAddr("198.19.200.10"), IPv6: netip.MustParseAddr("fd00:200::10"),
		Netns: prefix + "ext", MAC: "02:00:00:00:00:64",
		GatewayV4: netip.MustParseAddr("198.18.0.100"), GatewayV6: netip.MustParseAddr("fd00::100")}
	for _, a := range []netip.Addr{m.Ext.IPv4, m.Ext.IPv6} {
		m.ByAddr[a] = Endpoint{Workload: m.Ext.Name, Kind: "cidr:" + m.Ext.Name, Zone: m.Ext.Zone}
	}

	// What a real cluster puts behind Services: the api Deployment behind a ClusterIP Service (no
	// trafficDistribution: the setting the advice is about), postgres behind its StatefulSet's headless
	// governing Service, and the managed cache behind a Service without selector whose slices name its
	// address. The frontend has none: nothing in the cluster calls it (its callers would come through an
	// Ingress), so its answers from the api are the api's Service traffic.
	api := &Service{Name: "api", Selector: map[string]string{"app": "api"}, Port: Port}
	for _, z := range m.Zones {
		api.Pods = append(api.Pods, m.Pod("api", z))
	}
	m.Services = []*Service{
		api,
		{Name: "postgres", Headless: true, Selector: map[string]string{"app": "postgres"}, Pods: []*Pod{m.Pod("postgres", m.Zones[0])}, Port: Port},
		{Name: m.Ext.Name, Ext: &m.Ext, Port: Port},
	}
	return m
}

// ServiceNamed returns the application's Service called name, or nil.
func (m *Model) ServiceNamed(name string) *Service {
	for _, s := range m.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (m *Model) addPod(workload, kind string, n *Node, zi int) *Pod {
	k := 1
	for _, p := range m.Pods {
		if p.Node == n && !p.HostNetwork {
			k++
		}
	}
	p := &Pod{Namespace: m.AppNS, Workload: workload, Kind: kind, Node: n, Index: k,
		IPv4:    netip.AddrFrom4([4]byte{198, 18, byte(n.Index), byte(10 + k)}),
		IPv6:    netip.MustParseAddr(fmt.Sprintf("fd00:1:%d::%d", n.Index, 10+k)),
		MAC:     fmt.Sprintf("02:00:00:01:%02x:%02x", n.Index, k),
		HostMAC: fmt.Sprintf("02:00:00:02:%02x:%02x", n.Index, k),
		HostIf:  fmt.Sprintf("pod%d", k),
	}
	switch kind {
	case KindStatefulSet:
		p.OwnerKind, p.OwnerName = "StatefulSet", workload
		p.Name = fmt.Sprintf("%s-%d", workload, zi)
	default:
		// A Deployment's pods belong to a ReplicaSet named <deployment>-<pod-template-hash>.
		p.OwnerKind, p.OwnerName = "ReplicaSet", workload+"-"+templateHash(workload)
		p.Name = p.OwnerName + "-" + rand5(len(m.Pods))
	}
	p.Netns = fmt.Sprintf("%sp%d", m.Prefix, len(m.Pods)+1)
	m.Pods = append(m.Pods, p)
	m.ByAddr[p.IPv4] = Endpoint{Namespace: m.AppNS, Workload: workload, Kind: kind, Zone: n.Zone, Node: n}
	m.ByAddr[p.IPv6] = Endpoint{Namespace: m.AppNS, Workload: workload, Kind: kind, Zone: n.Zone, Node: n}
	return p
}

// Pod returns the pod of a workload in a zone, or nil.
func (m *Model) Pod(workload, zone string) *Pod {
	for _, p := range m.Pods {
		if p.OwnerName != "" && (p.Workload == workload || p.OwnerName == workload) && p.Node.Zone == zone {
			return p
		}
	}
	return nil
}

// NodeByName returns the node called name, or nil.
func (m *Model) NodeByName(name string) *Node { return m.byNodeName[name] }

// NodesInZone returns the nodes of a zone.
func (m *Model) NodesInZone(zone string) []*Node {
	var out []*Node
	for _, n := range m.Nodes {
		if n.Zone == zone {
			out = append(out, n)
		}
	}
	return out
}

// hashAlphabet is the alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const hashAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// templateHash is a stable, realistic-looking pod-template-hash for a workload name.
func templateHash(s string) string {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	b := make([]byte, 10)
	for i := range b {
		b[i] = hashAlphabet[h%uint32(len(hashAlphabet))]
		h = h*1103515245 + 12345
	}
	return string(b)
}

// rand5 is a stable five-character pod name suffix.
func rand5(i int) string { return templateHash(fmt.Sprint("pod", i))[:5] }
