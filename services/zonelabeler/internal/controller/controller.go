// Package controller keeps every pod's zone and region labels equal to its node's.
//
// It follows kubernetes/sample-controller: informer handlers enqueue pod keys (never objects) on a
// rate-limited workqueue; workers read the pod and its node from listers and send one merge patch when,
// and only when, the pod's labels differ from its node's location.
package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/zonetoll/zonetoll/shared/podlist"
	"github.com/zonetoll/zonetoll/shared/topology"
)

// FieldManager names our writes in managedFields and audit logs.
const FieldManager = "zonelabeler"

const nodeIndex = "spec.nodeName"

// Options says which pods get which labels.
type Options struct {
	ZoneLabels   []string // pod label keys that get the node's zone
	RegionLabels []string // pod label keys that get the node's region
	// Namespaces, when not empty, are the only namespaces whose pods are labelled.
	Namespaces        []string
	ExcludeNamespaces []string
	// PodSelector selects the pods to label (full Kubernetes selector syntax); applied by the API server,
	// so pods it excludes are never even cached.
	PodSelector string
	Workers     int
}

// Controller labels pods. Create it with New, start its informers with Start, and call RunWorkers while
// this replica leads.
type Controller struct {
	opts      Options
	core      rest.Interface // core/v1
	log       *slog.Logger
	metrics   *metrics
	informers []cache.SharedIndexInformer
	keys      []string // label keys written, zone keys first (see podInfo.Values)
	// listPageSize is the page size of the initial pod list; a field so tests can page small lists.
	listPageSize int64
	podIndexer   cache.Indexer
	nodes        corelisters.NodeLister
	synced       []cache.InformerSynced
	include      map[string]bool
	exclude      map[string]bool
	started      time.Time

	mu sync.Mutex
	// queue exists while this replica leads: a queue cannot be restarted after ShutDown, and ShutDown is
	// what wakes workers blocked in Get, so each term of leadership gets its own.
	queue   workqueue.TypedRateLimitingInterface[string]
	waiting map[string]struct{} // pods on a node with no zone label
	// written holds, per pod key, the resourceVersion our last patch produced until the cache has caught
	// up with it. Without it, an event that arrives between our patch and its watch event would make a
	// worker see the old labels in the cache and write the same labels a second time.
	written map[string]uint64
	// boundSeen holds when the informer first showed a pod bound, for pods bound after start. API
	// timestamps have one-second resolution, too coarse for a latency target under a second.
	boundSeen map[string]time.Time
}

// New builds a controller on a client for the core/v1 API (kubeclient.NewRESTClient with a scheme that
// holds core/v1). Nothing talks to the API server before Start.
func New(core rest.Interface, opts Options, reg prometheus.Registerer, log *slog.Logger) (*Controller, error) {
	if len(opts.ZoneLabels) == 0 {
		return nil, errors.New("at least one zone label key is needed")
	}
	if _, err := labels.Parse(opts.PodSelector); err != nil {
		return nil, fmt.Errorf("parsing pod selector %q: %w", opts.PodSelector, err)
	}
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	c := &Controller{
		opts:      opts,
		core:      core,
		log:       log.With("component", "controller"),
		include:   set(opts.Namespaces),
		exclude:   set(opts.ExcludeNamespaces),
		waiting:   map[string]struct{}{},
		written:   map[string]uint64{},
		boundSeen: map[string]time.Time{},
		started:   time.Now(),
		keys:      labelKeys(opts),

		listPageSize: podlist.DefaultPageSize,
	}

	podNamespace := metav1.NamespaceAll
	if len(opts.Namespaces) == 1 {
		podNamespace = opts.Namespaces[0] // one namespace: let the API server filter
	}
	// Plain informers over a core/v1 REST client rather than client-go's informer factory: the factory
	// needs the typed clientset, which links every API group into the binary (see kubeclient/clientset).
	// The transforms run before objects enter the cache, so only the trimmed copies are kept.
	podWatch := cache.NewFilteredListWatchFromClient(core, "pods", podNamespace, func(o *metav1.ListOptions) { o.LabelSelector = opts.PodSelector })
	listPods := func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return c.listPods(ctx, podNamespace, o)
	}
	podWatch.ListWithContextFunc = listPods
	podInformer := cache.NewSharedIndexInformerWithOptions(
		podWatch,
		&corev1.Pod{},
		cache.SharedIndexInformerOptions{Indexers: cache.Indexers{nodeIndex: func(obj any) ([]string, error) {
			if p, ok := obj.(*podInfo); ok && p.NodeName != "" {
				return []string{p.NodeName}, nil
			}
			return nil, nil
		}}},
	)
	nodeInformer := cache.NewSharedIndexInformerWithOptions(
		cache.NewFilteredListWatchFromClient(core, "nodes", metav1.NamespaceAll, func(*metav1.ListOptions) {}),
		&corev1.Node{},
		cache.SharedIndexInformerOptions{},
	)
	if err := podInformer.SetTransform(c.trimPod); err != nil {
		return nil, fmt.Errorf("setting the pod transform: %w", err)
	}
	if err := nodeInformer.SetTransform(trimNode); err != nil {
		return nil, fmt.Errorf("setting the node transform: %w", err)
	}
	c.informers = []cache.SharedIndexInformer{podInformer, nodeInformer}
	c.podIndexer = podInformer.GetIndexer()
	c.nodes = corelisters.NewNodeLister(nodeInformer.GetIndexer())
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueuePod,
		UpdateFunc: func(_, newObj any) { c.enqueuePod(newObj) },
		DeleteFunc: c.forgetPod,
	}); err != nil {
		return nil, fmt.Errorf("watching pods: %w", err)
	}
	if _, err := nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueueNodePods,
		UpdateFunc: func(oldObj, newObj any) {
			oldNode, newNode := oldObj.(*corev1.Node), newObj.(*corev1.Node)
			if topology.LocationOf(oldNode.Labels) != topology.LocationOf(newNode.Labels) {
				c.enqueueNodePods(newObj)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watching nodes: %w", err)
	}
	c.synced = []cache.InformerSynced{podInformer.HasSynced, nodeInformer.HasSynced}
	// Registered last: a scrape may come at any moment and reads the listers set above.
	m, err := newMetrics(reg, c)
	if err != nil {
		return nil, err
	}
	c.metrics = m
	return c, nil
}

// Start starts the informers (one list+watch each for pods and nodes). They run until ctx is done, on
// every replica, so a replica that becomes leader has warm caches.
func (c *Controller) Start(ctx context.Context) {
	for _, inf := range c.informers {
		go inf.RunWithContext(ctx)
	}
}

// Synced reports whether both caches have synced: the readiness check.
func (c *Controller) Synced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

// WaitForSync blocks until the caches synced or ctx is done.
func (c *Controller) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), c.synced...)
}

// RunWorkers labels pods until ctx is done and returns once every worker has stopped, so a caller that
// releases a leader lease afterwards knows no write is still under way. Every known pod is checked
// first: whatever changed while this replica did not lead is caught up.
func (c *Controller) RunWorkers(ctx context.Context) {
	if !c.WaitForSync(ctx) {
		return
	}
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 5*time.Minute),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "zonelabeler", MetricsProvider: c.metrics.queueProvider},
	)
	c.mu.Lock()
	c.queue = q
	c.mu.Unlock()
	pods := c.podIndexer.List()
	for _, p := range pods {
		c.enqueuePod(p)
	}
	c.log.Info("labelling pods", "pods", len(pods), "workers", c.opts.Workers)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() {
			for ctx.Err() == nil && c.next(ctx, q) {
			}
		})
	}
	<-ctx.Done()
	c.mu.Lock()
	c.queue = nil
	c.mu.Unlock()
	q.ShutDown()
	wg.Wait()
}

func (c *Controller) next(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) bool {
	key, shutdown := q.Get()
	if shutdown {
		return false
	}
	defer q.Done(key)
	if err := c.sync(ctx, key); err != nil {
		c.log.Warn("labelling pod failed; retrying with backoff", "pod", key, "attempt", q.NumRequeues(key)+1, "error", err)
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}

// sync makes one pod's labels match its node. A pod that is gone, not bound yet, or on a node without a
// zone needs nothing now: a later pod or node event enqueues it again.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not ours to retry: a malformed key never becomes valid
	}
	obj, exists, err := c.podIndexer.GetByKey(key)
	if err != nil {
		return fmt.Errorf("reading pod from cache: %w", err)
	}
	pod, ok := obj.(*podInfo)
	if !exists || !ok {
		c.setWaiting(key, false)
		return nil
	}
	if pod.NodeName == "" || pod.DeletionTimestamp != nil {
		return nil
	}
	if c.cacheBehindOurWrite(key, pod) {
		return nil // the watch event of our own patch will enqueue the pod again
	}
	node, err := c.nodes.Get(pod.NodeName)
	if apierrors.IsNotFound(err) {
		c.setWaiting(key, true)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading node %s from cache: %w", pod.NodeName, err)
	}
	loc := topology.LocationOf(node.Labels)
	if !loc.Known() {
		c.setWaiting(key, true)
		return nil
	}
	c.setWaiting(key, false)
	want := c.desired(pod, loc)
	if len(want) == 0 {
		c.takeBoundSeen(key)
		return nil // already right: no write
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": want}})
	if err != nil {
		return fmt.Errorf("encoding label patch: %w", err)
	}
	patched := &corev1.Pod{}
	err = c.core.Patch(types.MergePatchType).Namespace(ns).Resource("pods").Name(name).
		VersionedParams(&metav1.PatchOptions{FieldManager: FieldManager}, metav1.ParameterCodec).
		Body(patch).Do(ctx).Into(patched)
	result := writeResult(err)
	c.metrics.writes.WithLabelValues(result).Inc()
	switch {
	case err == nil:
		c.rememberWrite(key, patched.ResourceVersion)
		if seen, ok := c.takeBoundSeen(key); ok {
			c.metrics.latency.Observe(time.Since(seen).Seconds())
		}
		c.log.Debug("labelled pod", "pod", key, "node", node.Name, "labels", want)
		return nil
	case apierrors.IsNotFound(err):
		return nil // deleted since the cache saw it
	case apierrors.IsForbidden(err):
		return fmt.Errorf("patching labels of pod %s: forbidden (the zonelabeler ClusterRole must grant patch on pods): %w", key, err)
	default:
		return fmt.Errorf("patching labels of pod %s on node %s (%s): %w", key, node.Name, result, err)
	}
}

// desired returns the labels the pod lacks or has wrong; empty when it is right. Labels the node does
// not have (a region, say) are left as they are on the pod: the labeler never guesses or removes.
func (c *Controller) desired(pod *podInfo, loc topology.Location) map[string]string {
	want := map[string]string{}
	for i, k := range c.keys {
		v := loc.Zone
		if i >= len(c.opts.ZoneLabels) {
			if loc.Region == "" {
				continue
			}
			v = loc.Region
		}
		if pod.value(i) != v {
			want[k] = v
		}
	}
	return want
}

// noteBound remembers when a pod bound after this process started was first seen bound; pods bound
// earlier would only measure how long the labeler was not running.
func (c *Controller) noteBound(key string, pod *podInfo) {
	if pod.Bound.Before(c.started.Truncate(time.Second)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.boundSeen[key]; !ok {
		c.boundSeen[key] = time.Now()
	}
}

func (c *Controller) takeBoundSeen(key string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.boundSeen[key]
	delete(c.boundSeen, key)
	return t, ok
}

// bindingTime is when the pod was bound to its node: the PodScheduled condition's transition, or, for a
// pod created with spec.nodeName already set (DaemonSets, static pods), its creation.
func bindingTime(pod *corev1.Pod) time.Time {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionTrue && !cond.LastTransitionTime.IsZero() {
			return cond.LastTransitionTime.Time
		}
	}
	return pod.CreationTimestamp.Time
}

func writeResult(err error) string {
	switch {
	case err == nil:
		return "success"
	case apierrors.IsNotFound(err):
		return "not_found"
	case apierrors.IsForbidden(err):
		return "forbidden"
	case apierrors.IsConflict(err):
		return "conflict"
	case apierrors.IsTooManyRequests(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err):
		return "throttled"
	default:
		return "error"
	}
}

func (c *Controller) wanted(pod *podInfo) bool {
	if len(c.include) > 0 && !c.include[pod.Namespace] {
		return false
	}
	return !c.exclude[pod.Namespace]
}

func (c *Controller) enqueuePod(obj any) {
	pod, ok := obj.(*podInfo)
	if !ok || !c.wanted(pod) || pod.NodeName == "" {
		return
	}
	key, err := cache.MetaNamespaceKeyFunc(pod)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.noteBound(key, pod)
	c.mu.Lock()
	q := c.queue
	c.mu.Unlock()
	if q != nil { // not leading: the next term starts by checking every pod
		q.Add(key)
	}
}

func (c *Controller) forgetPod(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.setWaiting(key, false)
		c.mu.Lock()
		delete(c.written, key)
		delete(c.boundSeen, key)
		c.mu.Unlock()
	}
}

// rememberWrite records the resourceVersion our patch produced. Resource versions are opaque by
// contract but integers in every API server backed by etcd; client-go's MutationCache relies on the same.
// A version that does not parse is simply not remembered: at worst one redundant, idempotent write.
func (c *Controller) rememberWrite(key, resourceVersion string) {
	rv, err := strconv.ParseUint(resourceVersion, 10, 64)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.written[key] = rv
}

// cacheBehindOurWrite reports whether the cached pod is older than our last write to it; once the
// cache has caught up, the record is dropped.
func (c *Controller) cacheBehindOurWrite(key string, pod *podInfo) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	want, ok := c.written[key]
	if !ok {
		return false
	}
	have, err := strconv.ParseUint(pod.ResourceVersion, 10, 64)
	if err == nil && have < want {
		return true
	}
	delete(c.written, key)
	return false
}

func (c *Controller) enqueueNodePods(obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	objs, err := c.podIndexer.ByIndex(nodeIndex, node.Name)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	for _, o := range objs {
		c.enqueuePod(o)
	}
}

func (c *Controller) setWaiting(key string, waiting bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if waiting {
		c.waiting[key] = struct{}{}
	} else {
		delete(c.waiting, key)
	}
}

func (c *Controller) waitingCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiting)
}

// nodesByZone counts cached nodes per zone ("" for nodes without one), read at scrape time so a node
// that goes away leaves the gauge at once.
func (c *Controller) nodesByZone() map[string]int {
	out := map[string]int{}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return out
	}
	for _, n := range nodes {
		out[topology.LocationOf(n.Labels).Zone]++
	}
	return out
}

// trimNode keeps a node's name and its location labels only.
func trimNode(obj any) (any, error) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	keep := map[string]string{}
	for _, k := range []string{topology.ZoneLabel, topology.RegionLabel, topology.BetaZoneLabel, topology.BetaRegionLabel} {
		if v, ok := node.Labels[k]; ok {
			keep[k] = v
		}
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node.Name, UID: node.UID, ResourceVersion: node.ResourceVersion, Labels: keep}}, nil
}

func set(items []string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, s := range items {
		m[s] = true
	}
	return m
}
