package testcluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestEndpointSliceControllerWritesZonesAndHints runs the real EndpointSlice controller against the real
// API server: a Service with a selector over ready pods on nodes of three zones gets slices listing every
// pod with its node and zone and no hints; once the Service says trafficDistribution: PreferSameZone,
// every endpoint gets a hint for its own zone, which is what kube-proxy routes by.
func TestEndpointSliceControllerWritesZonesAndHints(t *testing.T) {
	Need(t)
	NeedRouting(t, "")
	c := StartT(t, Options{})
	ctx := t.Context()
	if err := c.StartControllerManager(ctx, ControllerManagerOptions{}); err != nil {
		t.Fatal(err)
	}
	ns := "routing"
	if _, err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// Two endpoints in zone a, one in b and c; a pod of another app and a pod that is not ready are not
	// endpoints... of this Service (the second is, but not ready).
	want := map[string]endpointWant{} // by address
	for i, z := range []string{"a", "a", "b", "c"} {
		node := fmt.Sprintf("node-%d", i)
		if _, err := c.CreateNode(ctx, NodeSpec{Name: node, Zone: "zone-" + z, Region: "r",
			InternalIPs: []string{fmt.Sprintf("198.18.0.%d", 10+i)}}); err != nil {
			t.Fatal(err)
		}
		ip := fmt.Sprintf("198.18.1.%d", 10+i)
		if _, err := c.CreatePod(ctx, PodSpec{Namespace: ns, Name: fmt.Sprintf("web-%d", i), NodeName: node,
			IPs: []string{ip}, Labels: map[string]string{"app": "web"}}); err != nil {
			t.Fatal(err)
		}
		want[ip] = endpointWant{node: node, zone: "zone-" + z, ready: true}
		if _, err := c.CreatePod(ctx, PodSpec{Namespace: ns, Name: fmt.Sprintf("other-%d", i), NodeName: node,
			IPs: []string{fmt.Sprintf("198.18.2.%d", 10+i)}, Labels: map[string]string{"app": "other"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreatePod(ctx, PodSpec{Namespace: ns, Name: "web-pending", NodeName: "node-3",
		IPs: []string{"198.18.1.99"}, Labels: map[string]string{"app": "web"}, Phase: corev1.PodPending}); err != nil {
		t.Fatal(err)
	}
	want["198.18.1.99"] = endpointWant{node: "node-3", zone: "zone-c", ready: false}

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	got := waitForSlices(t, c, ns, "web", func(eps map[string]endpointWant) bool { return equalEndpoints(eps, want) })
	for addr, ep := range got {
		if len(ep.hints) != 0 {
			t.Errorf("endpoint %s has hints %v before the Service asked for any", addr, ep.hints)
		}
	}

	patch := []byte(`{"spec":{"trafficDistribution":"PreferSameZone"}}`)
	if _, err := c.Client.CoreV1().Services(ns).Patch(ctx, "web", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatalf("patching the Service: %v", err)
	}
	for addr, w := range want {
		if w.ready {
			w.hints = []string{w.zone}
			want[addr] = w
		}
	}
	waitForSlices(t, c, ns, "web", func(eps map[string]endpointWant) bool { return equalEndpoints(eps, want) })
}

type endpointWant struct {
	node, zone string
	ready      bool
	hints      []string // forZones
}

func equalEndpoints(got, want map[string]endpointWant) bool {
	if len(got) != len(want) {
		return false
	}
	for addr, w := range want {
		g, ok := got[addr]
		if !ok || g.node != w.node || g.zone != w.zone || g.ready != w.ready || !slices.Equal(g.hints, w.hints) {
			return false
		}
	}
	return true
}

// waitForSlices polls the Service's EndpointSlices (bounded by a minute) until ok holds for their
// endpoints, by address, and fails the test with the last ones seen otherwise.
func waitForSlices(t *testing.T, c *Cluster, ns, service string, ok func(map[string]endpointWant) bool) map[string]endpointWant {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var last map[string]endpointWant
	var lastErr error
	for {
		list, err := c.Client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{
			LabelSelector: discoveryv1.LabelServiceName + "=" + service})
		if err == nil {
			last = map[string]endpointWant{}
			for _, s := range list.Items {
				if s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" {
					t.Fatalf("slice %s is managed by %q, not the EndpointSlice controller", s.Name, s.Labels[discoveryv1.LabelManagedBy])
				}
				for _, e := range s.Endpoints {
					ep := endpointWant{ready: e.Conditions.Ready != nil && *e.Conditions.Ready}
					if e.NodeName != nil {
						ep.node = *e.NodeName
					}
					if e.Zone != nil {
						ep.zone = *e.Zone
					}
					if e.Hints != nil {
						for _, z := range e.Hints.ForZones {
							ep.hints = append(ep.hints, z.Name)
						}
					}
					for _, a := range e.Addresses {
						last[a] = ep
					}
				}
			}
			if ok(last) {
				return last
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			t.Fatalf("EndpointSlices of %s/%s never became what the test expects; last seen %v (list error %v)\n%s",
				ns, service, fmtEndpoints(last), lastErr, c.logTail("kube-controller-manager.log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func fmtEndpoints(eps map[string]endpointWant) string {
	var lines []string
	for a, e := range eps {
		lines = append(lines, fmt.Sprintf("%s node=%s zone=%s ready=%v hints=%v", a, e.node, e.zone, e.ready, e.hints))
	}
	slices.Sort(lines)
	return "[" + strings.Join(lines, "; ") + "]"
}
