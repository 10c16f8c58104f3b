package resolve

import (
	"context"
	"net/netip"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/informerset"
	"github.com/zonetoll/zonetoll/shared/podlist"
	"github.com/zonetoll/zonetoll/shared/topology"
)

// Informers keep a Resolver in step with the cluster: one list+watch each for pods, nodes,
// ReplicaSets and Jobs (the last two metadata-only: only their owners are read). They are plain
// informers over a core/v1 REST client and the metadata client, not client-go's informer factories:
// those need the typed clientset, which links every API group into the binary (kubeclient/clientset).
type Informers struct {
	informerset.Set
	podStore  cache.Store // what the cache keeps of a pod: read by Pod (binding) and tests
	nodeStore cache.Store
	rsStore   cache.Store
	jobStore  cache.Store
}

// NewInformers connects r to the cluster: core is a core/v1 REST client (kubeclient.NewRESTClient), mc
// the metadata client. now is the clock used to time pod deletions.
func NewInformers(r *Resolver, core rest.Interface, mc metadata.Interface, now func() time.Time) (*Informers, error) {
	inf := &Informers{}
	podLW := cache.NewListWatchFromClient(core, "pods", metav1.NamespaceAll, fields.Everything())
	pageSize := listPageSize
	podLW.ListWithContextFunc = func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		// Page by page, each page trimmed at once: at most one page of full pods is decoded and held.
		items, rv, err := podlist.List(ctx, core, metav1.NamespaceAll, opts, pageSize, func(p *corev1.Pod) corev1.Pod {
			t, _ := trim(p)
			return *t.(*corev1.Pod)
		})
		if err != nil {
			return nil, err
		}
		return &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: rv}, Items: items}, nil
	}
	pods := cache.NewSharedIndexInformer(podLW, &corev1.Pod{}, 0, cache.Indexers{})
	nodes := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(core, "nodes", metav1.NamespaceAll, fields.Everything()), &corev1.Node{}, 0, cache.Indexers{})
	rs := cache.NewSharedIndexInformer(metadataListWatch(mc, appsv1.SchemeGroupVersion.WithResource("replicasets")), &metav1.PartialObjectMetadata{}, 0, cache.Indexers{})
	jobs := cache.NewSharedIndexInformer(metadataListWatch(mc, batchv1.SchemeGroupVersion.WithResource("jobs")), &metav1.PartialObjectMetadata{}, 0, cache.Indexers{})
	inf.podStore, inf.nodeStore, inf.rsStore, inf.jobStore = pods.GetStore(), nodes.GetStore(), rs.GetStore(), jobs.GetStore()
	for _, a := range []struct {
		name      string
		i         cache.SharedIndexInformer
		transform cache.TransformFunc
		h         cache.ResourceEventHandler
	}{
		{"pod", pods, trim, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { upsertPod(r, obj, now()) },
			UpdateFunc: func(_, obj any) { upsertPod(r, obj, now()) },
			DeleteFunc: func(obj any) {
				if m, ok := metaOf(obj); ok {
					r.DeletePod(m.GetNamespace(), m.GetName(), now())
				}
			},
		}},
		{"node", nodes, trim, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { upsertNode(r, obj) },
			UpdateFunc: func(_, obj any) { upsertNode(r, obj) },
			DeleteFunc: func(obj any) {
				if m, ok := metaOf(obj); ok {
					r.DeleteNode(m.GetName())
				}
			},
		}},
		{"ReplicaSet owner", rs, trimMeta, ownerChanges(r)},
		{"Job owner", jobs, trimMeta, ownerChanges(r)},
	} {
		if err := inf.Add(a.name, a.i, a.transform, a.h); err != nil {
			return nil, err
		}
	}
	r.SetOwnerLookup(inf.owner)
	return inf, nil
}

// listPageSize is how many pods one page of the initial list holds; a variable so tests can page small
// lists (NewInformers reads it once).
var listPageSize int64 = podlist.DefaultPageSize

// metadataListWatch lists and watches a resource's metadata only (PartialObjectMetadata).
func metadataListWatch(mc metadata.Interface, gvr schema.GroupVersionResource) *cache.ListWatch {
	res := mc.Resource(gvr)
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return res.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return res.Watch(ctx, o)
		},
	}
}

// Pod returns the cached (trimmed) pod namespace/name, for binding agents' tokens to their pods. The
// pod is shared: do not modify it.
func (inf *Informers) Pod(namespace, name string) (*corev1.Pod, bool) {
	obj, ok, err := inf.podStore.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, false
	}
	p, ok := obj.(*corev1.Pod)
	return p, ok
}

// Node returns the cached (trimmed) node; shared, do not modify it.
func (inf *Informers) Node(name string) (*corev1.Node, bool) {
	obj, ok, err := inf.nodeStore.GetByKey(name)
	if err != nil || !ok {
		return nil, false
	}
	n, ok := obj.(*corev1.Node)
	return n, ok
}

func (inf *Informers) owner(kind, namespace, name string) (string, string, bool) {
	store := inf.rsStore
	if kind == "Job" {
		store = inf.jobStore
	}
	obj, ok, err := store.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return "", "", false
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return "", "", false
	}
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return ref.Kind, ref.Name, true
	}
	return "", "", false
}

// ownerChanges invalidates memoized workloads when a ReplicaSet or Job appears, goes, or changes
// controller; other updates (status, replicas) change nothing the resolver uses.
func ownerChanges(r *Resolver) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { r.Invalidate() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(metav1.Object)
			n, ok2 := newObj.(metav1.Object)
			if !ok1 || !ok2 || controllerName(o) != controllerName(n) {
				r.Invalidate()
			}
		},
		DeleteFunc: func(any) { r.Invalidate() },
	}
}

func controllerName(m metav1.Object) string {
	if ref := metav1.GetControllerOfNoCopy(m); ref != nil {
		return ref.Kind + "/" + ref.Name
	}
	return ""
}

func metaOf(obj any) (metav1.Object, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, ok := obj.(metav1.Object)
	return m, ok
}

func upsertPod(r *Resolver, obj any, now time.Time) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return // not scheduled: no IP yet
	}
	s := PodState{
		Namespace: pod.Namespace, Name: pod.Name, Node: pod.Spec.NodeName,
		HostNetwork:  pod.Spec.HostNetwork,
		TemplateHash: pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey],
		Created:      pod.CreationTimestamp.Time,
		Finished:     pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed,
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		s.OwnerKind, s.OwnerName = ref.Kind, ref.Name
	}
	for _, ip := range pod.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			s.IPs = append(s.IPs, a)
		}
	}
	if len(s.IPs) == 0 && pod.Status.PodIP != "" {
		if a, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
			s.IPs = append(s.IPs, a)
		}
	}
	r.UpsertPod(s, now)
}

func upsertNode(r *Resolver, obj any) {
	node, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	loc := topology.LocationOf(node.Labels)
	s := NodeState{Name: node.Name, Zone: loc.Zone, Region: loc.Region}
	for _, a := range node.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			s.IPs = append(s.IPs, ip)
		}
	}
	r.UpsertNode(s)
}

// trim keeps only what the resolver and the token binding (internal/binding: UID, service account,
// deletion time, phase, node) read of pods and nodes, so 10,000 cached pods stay small.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		t := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
				CreationTimestamp: o.CreationTimestamp, DeletionTimestamp: o.DeletionTimestamp,
				OwnerReferences: controllerOnly(o.OwnerReferences),
			},
			Spec: corev1.PodSpec{NodeName: o.Spec.NodeName, HostNetwork: o.Spec.HostNetwork, ServiceAccountName: o.Spec.ServiceAccountName},
			Status: corev1.PodStatus{
				Phase: o.Status.Phase, PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs,
			},
		}
		if h, ok := o.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; ok {
			t.Labels = map[string]string{appsv1.DefaultDeploymentUniqueLabelKey: h}
		}
		return t, nil
	case *corev1.Node:
		keep := map[string]string{}
		for _, k := range []string{topology.ZoneLabel, topology.RegionLabel, topology.BetaZoneLabel, topology.BetaRegionLabel} {
			if v, ok := o.Labels[k]; ok {
				keep[k] = v
			}
		}
		t := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: keep}}
		for _, a := range o.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				t.Status.Addresses = append(t.Status.Addresses, a)
			}
		}
		return t, nil
	}
	return obj, nil // tombstones pass through
}

// trimMeta keeps a ReplicaSet's or Job's name and controller.
func trimMeta(obj any) (any, error) {
	o, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return obj, nil
	}
	return &metav1.PartialObjectMetadata{
		TypeMeta: o.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion,
			OwnerReferences: controllerOnly(o.OwnerReferences),
		},
	}, nil
}

func controllerOnly(refs []metav1.OwnerReference) []metav1.OwnerReference {
	for _, ref := range refs {
		if ref.Controller != nil && *ref.Controller {
			return []metav1.OwnerReference{ref}
		}
	}
	return nil
}
