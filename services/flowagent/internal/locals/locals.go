// Package locals keeps the set of addresses that live on this node: the Node's addresses and the IPs
// of its pods that do not use the host network. A flow whose source is in the set is this node's to
// report.
package locals

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/zonetoll/zonetoll/shared/report"
)

// Set is a concurrency-safe address set. An address that leaves the set stays a member for Grace,
// because the traffic a pod sent just before it was deleted is drained up to one interval later.
type Set struct {
	Grace time.Duration
	now   func() time.Time

	mu      sync.RWMutex
	current map[report.Addr]struct{}
	gone    map[report.Addr]time.Time // removed, and when
}

// NewSet returns an empty Set.
func NewSet(grace time.Duration) *Set {
	return &Set{Grace: grace, now: time.Now, current: map[report.Addr]struct{}{}, gone: map[report.Addr]time.Time{}}
}

// Contains reports whether a is local now or was within Grace.
func (s *Set) Contains(a report.Addr) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.current[a]; ok {
		return true
	}
	t, ok := s.gone[a]
	return ok && s.now().Sub(t) <= s.Grace
}

// Replace makes addrs the current members.
func (s *Set) Replace(addrs []netip.Addr) {
	next := make(map[report.Addr]struct{}, len(addrs))
	for _, a := range addrs {
		next[report.AddrFrom(a)] = struct{}{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for a := range s.current {
		if _, ok := next[a]; !ok {
			s.gone[a] = now
		}
	}
	for a, t := range s.gone {
		if _, back := next[a]; back || now.Sub(t) > s.Grace {
			delete(s.gone, a)
		}
	}
	s.current = next
}

// Len is the number of current members.
func (s *Set) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.current)
}

// Addresses returns the node's addresses and those of its pods that do not share them. Host-network
// pods use the node's addresses, which are already there.
func Addresses(node *corev1.Node, pods []*corev1.Pod) []netip.Addr {
	var out []netip.Addr
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	if node != nil {
		for _, na := range node.Status.Addresses {
			if na.Type == corev1.NodeInternalIP || na.Type == corev1.NodeExternalIP {
				add(na.Address)
			}
		}
	}
	for _, p := range pods {
		if p.Spec.HostNetwork {
			continue
		}
		for _, ip := range p.Status.PodIPs {
			add(ip.IP)
		}
		if len(p.Status.PodIPs) == 0 {
			add(p.Status.PodIP)
		}
	}
	return out
}

// Watcher keeps a Set up to date from informers on this node's pods and on the Nodes, and
// optionally a second Set with the addresses of every node in the cluster.
type Watcher struct {
	set     *Set
	nodeSet *Set
	node    string
	log     *slog.Logger
	factory informers.SharedInformerFactory
	nodes   informers.SharedInformerFactory
	podInf  cache.SharedIndexInformer
	nodeInf cache.SharedIndexInformer
	mu      sync.Mutex
}

// NewWatcher prepares informers for pods with spec.nodeName=node and for Nodes: only this one, or all
// of them when nodeSet is not nil (it then receives every node's addresses).
func NewWatcher(cs kubernetes.Interface, node string, set, nodeSet *Set, log *slog.Logger) (*Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{set: set, nodeSet: nodeSet, node: node, log: log.With("component", "locals")}
	w.factory = informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}))
	w.nodes = informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		if nodeSet == nil {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", node).String()
		}
	}))
	w.podInf = w.factory.Core().V1().Pods().Informer()
	w.nodeInf = w.nodes.Core().V1().Nodes().Informer()
	h := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.rebuild() },
		UpdateFunc: func(any, any) { w.rebuild() },
		DeleteFunc: func(any) { w.rebuild() },
	}
	for _, inf := range []cache.SharedIndexInformer{w.podInf, w.nodeInf} {
		if _, err := inf.AddEventHandler(h); err != nil {
			return nil, fmt.Errorf("adding event handler: %w", err)
		}
	}
	return w, nil
}

// rebuild recomputes the set from the caches. A node runs about a hundred pods, so rebuilding on
// every event costs less than tracking each pod's addresses.
func (w *Watcher) rebuild() {
	w.mu.Lock()
	defer w.mu.Unlock()
	var node *corev1.Node
	if obj, ok, _ := w.nodeInf.GetStore().GetByKey(w.node); ok {
		node, _ = obj.(*corev1.Node)
	}
	var pods []*corev1.Pod
	for _, obj := range w.podInf.GetStore().List() {
		if p, ok := obj.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	w.set.Replace(Addresses(node, pods))
	if w.nodeSet != nil {
		var all []netip.Addr
		for _, obj := range w.nodeInf.GetStore().List() {
			if n, ok := obj.(*corev1.Node); ok {
				all = append(all, Addresses(n, nil)...)
			}
		}
		w.nodeSet.Replace(all)
	}
}

// Node returns the cached Node, or nil before it was seen.
func (w *Watcher) Node() *corev1.Node {
	obj, ok, _ := w.nodeInf.GetStore().GetByKey(w.node)
	if !ok {
		return nil
	}
	n, _ := obj.(*corev1.Node)
	return n
}

// Start starts the informers and waits until their caches synced and the Node was seen.
func (w *Watcher) Start(ctx context.Context) error {
	w.factory.Start(ctx.Done())
	w.nodes.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), w.podInf.HasSynced, w.nodeInf.HasSynced) {
		return errors.New("waiting for pod and node caches: stopped before they synced")
	}
	if w.Node() == nil {
		return fmt.Errorf("node %q not found: ZONETOLL_NODE_NAME must be this node's name", w.node)
	}
	w.rebuild()
	w.log.Info("local addresses known", "addresses", w.set.Len())
	return nil
}

// Shutdown waits for the informers' goroutines after ctx is done.
func (w *Watcher) Shutdown() {
	w.factory.Shutdown()
	w.nodes.Shutdown()
}
