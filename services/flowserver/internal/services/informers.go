package services

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/informerset"
)

// Informers keep an Index in step with the cluster: one list+watch for Services and one for
// EndpointSlices, plain informers over REST clients like those of package resolve (no typed
// clientset). Both caches keep trimmed objects (trim): no ports, no status, no managed fields.
//
// The initial state: under client-go 0.37 an informer streams it from a 1.35+ API server as watch
// events, each object through the transform as it arrives, and lists only against older servers.
// Unlike pods, Services and EndpointSlices get no paged list for that case (shared/podlist): a full
// EndpointSlice costs about as much per endpoint as the trimmed one plus its ports, far less than a
// pod, so a one-response list of them stays small next to the pod list the flowserver already pages.
type Informers struct {
	informerset.Set
}

// NewInformers connects x to the cluster: core is a core/v1 REST client, disc a discovery.k8s.io/v1
// one (kubeclient.NewRESTClient).
func NewInformers(x *Index, core, disc rest.Interface) (*Informers, error) {
	svcs := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(core, "services", metav1.NamespaceAll, fields.Everything()), &corev1.Service{}, 0, cache.Indexers{})
	eps := cache.NewSharedIndexInformer(cache.NewListWatchFromClient(disc, "endpointslices", metav1.NamespaceAll, fields.Everything()), &discoveryv1.EndpointSlice{}, 0, cache.Indexers{})
	inf := &Informers{}
	for _, a := range []struct {
		name string
		i    cache.SharedIndexInformer
		h    cache.ResourceEventHandler
	}{
		{"Service", svcs, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { upsertService(x, obj) },
			UpdateFunc: func(_, obj any) { upsertService(x, obj) },
			DeleteFunc: func(obj any) {
				if m, ok := metaOf(obj); ok {
					x.DeleteService(m.GetNamespace(), m.GetName())
				}
			},
		}},
		{"EndpointSlice", eps, cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { upsertSlice(x, obj) },
			UpdateFunc: func(_, obj any) { upsertSlice(x, obj) },
			DeleteFunc: func(obj any) {
				if m, ok := metaOf(obj); ok {
					x.DeleteSlice(m.GetNamespace(), m.GetName())
				}
			},
		}},
	} {
		if err := inf.Add(a.name, a.i, trim, a.h); err != nil {
			return nil, err
		}
	}
	return inf, nil
}

func metaOf(obj any) (metav1.Object, bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, ok := obj.(metav1.Object)
	return m, ok
}

func upsertService(x *Index, obj any) {
	if s, ok := obj.(*corev1.Service); ok {
		x.UpsertService(ServiceStateOf(s))
	}
}

func upsertSlice(x *Index, obj any) {
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		x.UpsertSlice(SliceStateOf(s))
	}
}

// ServiceStateOf reads what the index keeps of a Service.
func ServiceStateOf(s *corev1.Service) ServiceState {
	st := ServiceState{
		Namespace: s.Namespace, Name: s.Name, Type: string(s.Spec.Type),
		Headless:     s.Spec.ClusterIP == corev1.ClusterIPNone,
		TopologyMode: s.Annotations[corev1.AnnotationTopologyMode],
	}
	if st.Type == "" {
		st.Type = string(corev1.ServiceTypeClusterIP) // the API server's default
	}
	if st.TopologyMode == "" {
		st.TopologyMode = s.Annotations[corev1.DeprecatedAnnotationTopologyAwareHints]
	}
	if s.Spec.TrafficDistribution != nil {
		st.TrafficDistribution = *s.Spec.TrafficDistribution
	}
	if s.Spec.InternalTrafficPolicy != nil {
		st.InternalTrafficPolicy = string(*s.Spec.InternalTrafficPolicy)
	}
	return st
}

// SliceStateOf reads what the index keeps of an EndpointSlice. Addresses that do not parse are
// skipped (the API server validates them; a slice of type FQDN has none that parse).
func SliceStateOf(s *discoveryv1.EndpointSlice) SliceState {
	_, headless := s.Labels[corev1.IsHeadlessService]
	st := SliceState{Namespace: s.Namespace, Name: s.Name, Service: s.Labels[discoveryv1.LabelServiceName], HeadlessLabel: headless}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		ep := EndpointState{Ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		for _, a := range e.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				ep.Addrs = append(ep.Addrs, ip.Unmap())
			}
		}
		if len(ep.Addrs) == 0 {
			continue
		}
		if e.Zone != nil {
			ep.Zone = *e.Zone
		}
		if e.NodeName != nil {
			ep.Node = *e.NodeName
		}
		if e.Hints != nil {
			for _, z := range e.Hints.ForZones {
				ep.ForZones = append(ep.ForZones, z.Name)
			}
		}
		if r := e.TargetRef; r != nil && r.Kind == "Pod" && r.Name != "" {
			ns := r.Namespace
			if ns == "" {
				ns = s.Namespace
			}
			ep.Ref = "pod:" + ns + "/" + r.Name
		}
		st.Endpoints = append(st.Endpoints, ep)
	}
	return st
}

// trim keeps only what the index reads of Services and EndpointSlices.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		t := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion},
			Spec: corev1.ServiceSpec{
				Type: o.Spec.Type, ClusterIP: o.Spec.ClusterIP,
				TrafficDistribution: o.Spec.TrafficDistribution, InternalTrafficPolicy: o.Spec.InternalTrafficPolicy,
			},
		}
		t.Annotations = keep(o.Annotations, corev1.AnnotationTopologyMode, corev1.DeprecatedAnnotationTopologyAwareHints)
		return t, nil
	case *discoveryv1.EndpointSlice:
		t := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion},
			AddressType: o.AddressType,
			Endpoints:   make([]discoveryv1.Endpoint, len(o.Endpoints)),
		}
		t.Labels = keep(o.Labels, discoveryv1.LabelServiceName, corev1.IsHeadlessService)
		for i := range o.Endpoints {
			e := &o.Endpoints[i]
			te := discoveryv1.Endpoint{
				Addresses:  e.Addresses,
				Conditions: discoveryv1.EndpointConditions{Ready: e.Conditions.Ready},
				NodeName:   e.NodeName, Zone: e.Zone,
			}
			if e.Hints != nil && len(e.Hints.ForZones) > 0 {
				te.Hints = &discoveryv1.EndpointHints{ForZones: e.Hints.ForZones}
			}
			if r := e.TargetRef; r != nil && r.Kind == "Pod" {
				te.TargetRef = &corev1.ObjectReference{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name}
			}
			t.Endpoints[i] = te
		}
		return t, nil
	}
	return obj, nil // tombstones pass through
}

func keep(m map[string]string, keys ...string) map[string]string {
	var out map[string]string
	for _, k := range keys {
		if v, ok := m[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}
