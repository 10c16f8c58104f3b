package demo

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/testkit/testcluster"
	"github.com/zonetoll/zonetoll/tools/overlaycheck"
)

// ToolNamespace is where zonetoll's service accounts live (the services' default ZONETOLL_NAMESPACE).
const ToolNamespace = "zonetoll"

// Account is a service account's kubeconfig and token files.
type Account struct {
	Kubeconfig, TokenFile string
}

// populate creates the namespaces, service accounts, nodes, the Deployments' ReplicaSets and the pods of
// m through the API, and writes each account's kubeconfig and token into dir.
func populate(ctx context.Context, c *testcluster.Cluster, m *Model, repo, dir string, routing bool) (map[string]Account, error) {
	for _, ns := range []string{ToolNamespace, m.AppNS} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	accounts := map[string]Account{}
	// Each service gets exactly what its deploy manifests grant.
	for _, name := range []string{"flowserver", "flowagent", "zonelabeler"} {
		rules, clusterRules, err := overlaycheck.Rules(filepath.Join(repo, "kustomize", "base", name))
		if err != nil {
			return nil, fmt.Errorf("reading the RBAC of %s's manifests: %w", name, err)
		}
		if name == "flowserver" {
			zoneRules, err := dedupeRules(ctx, c, repo, m.Zones)
			if err != nil {
				return nil, err
			}
			rules = append(rules, zoneRules...)
		}
		spec := testcluster.ServiceAccountSpec{Namespace: ToolNamespace, Name: name, Rules: rules, ClusterRules: clusterRules}
		spec.ExpirationSeconds = 24 * 3600
		sa, err := c.ServiceAccount(ctx, spec)
		if err != nil {
			return nil, err
		}
		a := Account{Kubeconfig: filepath.Join(dir, spec.Name+".kubeconfig"), TokenFile: filepath.Join(dir, spec.Name+".token")}
		if err := testcluster.WriteKubeconfig(a.Kubeconfig, sa.Config); err != nil {
			return nil, err
		}
		if err := writeFile(a.TokenFile, sa.Token+"\n"); err != nil {
			return nil, err
		}
		accounts[spec.Name] = a
	}
	for _, n := range m.Nodes {
		if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: n.Name, Zone: n.Zone, Region: m.Region,
			InternalIPs: []string{n.IPv4.String(), n.IPv6.String()}}); err != nil {
			return nil, err
		}
	}
	yes := true
	made := map[string]bool{}
	for _, p := range m.Pods {
		if p.OwnerKind != "ReplicaSet" || made[p.OwnerName] {
			continue
		}
		made[p.OwnerName] = true
		labels := map[string]string{"app": p.Workload, "pod-template-hash": templateHash(p.Workload)}
		one := int32(1)
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.OwnerName, Labels: labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: p.Workload,
					UID: types.UID(fakeUID(p.Workload)), Controller: &yes}}},
			Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: p.Workload, Image: "registry.example/" + p.Workload + ":1"}}}}},
		}
		if _, err := c.Client.AppsV1().ReplicaSets(p.Namespace).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating replicaset %s: %w", p.OwnerName, err)
		}
	}
	created := map[*Pod]*corev1.Pod{}
	for _, p := range m.Pods {
		spec := testcluster.PodSpec{Namespace: p.Namespace, Name: p.Name, NodeName: p.Node.Name,
			Labels: map[string]string{"app": p.OwnerName}, HostNetwork: p.HostNetwork,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: p.OwnerKind, Name: p.OwnerName,
				UID: types.UID(fakeUID(p.OwnerName)), Controller: &yes}}}
		if p.Kind == KindDeployment {
			spec.Labels = map[string]string{"app": p.Workload, "pod-template-hash": templateHash(p.Workload)}
		}
		if !p.HostNetwork {
			spec.IPs = []string{p.IPv4.String(), p.IPv6.String()}
		}
		obj, err := c.CreatePod(ctx, spec)
		if err != nil {
			return nil, err
		}
		created[p] = obj
	}
	if err := createServices(ctx, c, m, created, routing); err != nil {
		return nil, err
	}
	return accounts, nil
}

// createServices creates the application's Services and, since the test cluster runs no controllers,
// their EndpointSlices as the EndpointSlice controller writes them: one slice per address family,
// labelled with the Service's name (and as headless for a headless Service), each endpoint with its
// pod as targetRef, its node and the node's zone, ready, and no hints (no Service asks for them yet).
// A Service without selector gets the slices its owner writes by hand: the address and its zone.
// With routing, the EndpointSlice controller runs and writes the slices of Services with a selector
// itself, and those Services are dual-stack (the api one's ClusterIPs are what the frontend calls).
func createServices(ctx context.Context, c *testcluster.Cluster, m *Model, pods map[*Pod]*corev1.Pod, routing bool) error {
	udp := corev1.ProtocolUDP
	ready := true
	for _, s := range m.Services {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: m.AppNS, Name: s.Name},
			Spec: corev1.ServiceSpec{Selector: s.Selector, Ports: []corev1.ServicePort{{Name: "app", Protocol: udp, Port: s.Port}}}}
		if s.Headless {
			svc.Spec.ClusterIP = corev1.ClusterIPNone
		}
		if routing && s.Selector != nil {
			dual := corev1.IPFamilyPolicyRequireDualStack
			svc.Spec.IPFamilyPolicy = &dual
			svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
		}
		if _, err := c.Client.CoreV1().Services(m.AppNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Service %s/%s: %w", m.AppNS, s.Name, err)
		}
		if routing && s.Selector != nil {
			continue // the EndpointSlice controller writes them
		}
		labels := map[string]string{discoveryv1.LabelServiceName: s.Name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}
		if s.Selector == nil {
			labels[discoveryv1.LabelManagedBy] = "zonetoll-demo"
		}
		if s.Headless {
			labels[corev1.IsHeadlessService] = ""
		}
		for _, family := range []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6} {
			addr := func(v4, v6 netip.Addr) string {
				if family == discoveryv1.AddressTypeIPv4 {
					return v4.String()
				}
				return v6.String()
			}
			name, port := "app", s.Port
			es := &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: m.AppNS, Name: s.Name + "-" + strings.ToLower(string(family)), Labels: labels},
				AddressType: family,
				Ports:       []discoveryv1.EndpointPort{{Name: &name, Protocol: &udp, Port: &port}},
			}
			for _, p := range s.Pods {
				obj := pods[p]
				if obj == nil {
					return fmt.Errorf("Service %s: pod %s was not created", s.Name, p.Name)
				}
				node, zone := p.Node.Name, p.Node.Zone
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
					Addresses:  []string{addr(p.IPv4, p.IPv6)},
					Conditions: discoveryv1.EndpointConditions{Ready: &ready},
					TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: obj.Namespace, Name: obj.Name, UID: obj.UID},
					NodeName:   &node, Zone: &zone,
				})
			}
			if x := s.Ext; x != nil {
				zone := x.Zone
				es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{addr(x.IPv4, x.IPv6)},
					Conditions: discoveryv1.EndpointConditions{Ready: &ready}, Zone: &zone})
			}
			if _, err := c.Client.DiscoveryV1().EndpointSlices(m.AppNS).Create(ctx, es, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("creating EndpointSlice %s/%s: %w", m.AppNS, es.Name, err)
			}
		}
	}
	return nil
}

// fakeUID is a stable UID for an owner object that no controller manages here.
func fakeUID(name string) string {
	h := templateHash(name + "uid")
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", []byte(h)[:6])
}
