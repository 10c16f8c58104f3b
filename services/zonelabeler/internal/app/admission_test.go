package app

import (
	"encoding/json"
	"fmt"
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/shared/topology"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// legacyZoneLabel is the key the PodTopologyLabels plugin copied in its 1.33 alpha (topology.k8s.io),
// before kubernetes/kubernetes#132462 moved it to the well-known topology.kubernetes.io keys. The node
// carries it here to show whether the plugin copies it.
const legacyZoneLabel = "topology.k8s.io/zone"

// TestPodTopologyLabelsAdmission shows, on the real API server with its PodTopologyLabels admission
// plugin on (the default from 1.35), which labels a bound pod gets from the API server alone, that a
// later change of the node's zone does not reach pods already bound, and what zonelabeler then still
// writes: only the pods the plugin left wrong or bare.
func TestPodTopologyLabelsAdmission(t *testing.T) {
	c := testcluster.StartT(t, testcluster.Options{PodTopologyLabels: true})
	f := &fixture{t: t, c: c, ctx: t.Context(), ns: "zl-admission"}
	f.namespace(f.ns)
	if _, err := c.CreateNode(f.ctx, testcluster.NodeSpec{Name: "n-a", Zone: zoneA, Region: region,
		Labels: map[string]string{legacyZoneLabel: "legacy-" + zoneA, "example.com/rack": "r1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNode(f.ctx, testcluster.NodeSpec{Name: "n-beta",
		Labels: map[string]string{topology.BetaZoneLabel: zoneB, topology.BetaRegionLabel: region}}); err != nil {
		t.Fatal(err)
	}
	// The plugin reads nodes from the API server's own informer; a pod bound in the moment after its
	// node was created can miss the node there and gets nothing (a real cluster's nodes exist long before
	// their pods). The first labelled probe pod shows the node has reached that cache.
	probes := f.waitAdmissionSeesNode("n-a", zoneA)
	t.Logf("the API server's admission cache had node n-a after %d probe pod(s)", probes)

	// Created bound (spec.nodeName), with a stale zone label of its own and a label of its own.
	f.pod(f.ns, "created-bound", "n-a", map[string]string{topology.ZoneLabel: "stale", "app": "web"})
	// Created unscheduled, then bound through the binding subresource, as the scheduler does.
	f.bindNew("bound-later", "n-a")
	// On a node that carries only the deprecated failure-domain.beta labels.
	f.pod(f.ns, "on-beta-node", "n-beta", nil)

	wantA := map[string]string{topology.ZoneLabel: zoneA, topology.RegionLabel: region}
	for _, tt := range []struct {
		pod  string
		want map[string]string
	}{
		// The plugin overwrites the pod's own zone label; nothing else of the node's is copied: not
		// kubernetes.io/hostname, not the legacy topology.k8s.io key, not other labels.
		{"created-bound", map[string]string{topology.ZoneLabel: zoneA, topology.RegionLabel: region, "app": "web"}},
		{"bound-later", wantA},
		// Only the well-known keys are copied, not their deprecated predecessors.
		{"on-beta-node", map[string]string{}},
	} {
		if got := f.labels(f.ns, tt.pod); !maps.Equal(got, tt.want) {
			t.Errorf("pod %s has labels %v from the API server, want %v", tt.pod, got, tt.want)
		}
	}

	// The node moves to zone C. Pods bound from now on get C (the probe shows the plugin has seen the
	// change); the pods bound before keep A: the plugin acts only when a pod is bound.
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{topology.ZoneLabel: zoneC}}})
	if _, err := c.Client.CoreV1().Nodes().Patch(f.ctx, "n-a", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitAdmissionSeesNode("n-a", zoneC)
	for _, p := range []string{"created-bound", "bound-later"} {
		if got := f.labels(f.ns, p)[topology.ZoneLabel]; got != zoneA {
			t.Errorf("pod %s zone label %q after its node moved to %s, want still %s (the plugin does not follow nodes)", p, got, zoneC, zoneA)
		}
	}
	f.pod(f.ns, "after-move", "n-a", nil)

	// zonelabeler on top: it corrects the pods bound before the move (probes included) and labels the
	// pod on the beta-labelled node; the pods the plugin labelled right (after-move, the last probe)
	// cost no write.
	nodeZone := map[string]string{"n-a": zoneC, "n-beta": zoneB}
	pods, err := c.Client.CoreV1().Pods(f.ns).List(f.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale := 0
	for _, p := range pods.Items {
		if p.Labels[topology.ZoneLabel] != nodeZone[p.Spec.NodeName] || p.Labels[topology.RegionLabel] != region {
			stale++
		}
	}
	t.Logf("%d of %d pods do not carry their node's current zone and region before zonelabeler runs", stale, len(pods.Items))
	base := f.patches()
	f.labeler(nil, nil)
	for _, p := range pods.Items {
		f.waitLabelled(f.ns, p.Name, nodeZone[p.Spec.NodeName], region)
	}
	if stale < 3 {
		t.Errorf("%d stale pods, want at least created-bound, bound-later and on-beta-node", stale)
	}
	if got := f.patches() - base; got != float64(stale) {
		t.Errorf("the labeler wrote %v times, want %d: one per stale pod, none for pods the API server labelled right", got, stale)
	}
}

// waitAdmissionSeesNode creates probe pods on node until one is admitted with the node's zone, and
// returns how many it created. Bounded: 100 probes.
func (f *fixture) waitAdmissionSeesNode(node, zone string) int {
	f.t.Helper()
	for i := 1; i <= 100; i++ {
		name := fmt.Sprintf("probe-%s-%s-%d", node, zone, i)
		p, err := f.c.Client.CoreV1().Pods(f.ns).Create(f.ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: testcluster.PauseImage}}},
		}, metav1.CreateOptions{})
		if err != nil {
			f.t.Fatal(err)
		}
		if p.Labels[topology.ZoneLabel] == zone {
			return i
		}
		time.Sleep(50 * time.Millisecond) // the informer's watch event is on its way

	}
	f.t.Fatalf("no pod bound to %s got zone %s from the PodTopologyLabels plugin in 100 tries", node, zone)
	return 0
}

// bindNew creates an unscheduled pod and binds it to node through the binding subresource.
func (f *fixture) bindNew(name, node string) {
	f.t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: testcluster.PauseImage}}}}
	if _, err := f.c.Client.CoreV1().Pods(f.ns).Create(f.ctx, pod, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
	if err := f.c.Client.CoreV1().Pods(f.ns).Bind(f.ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}
