package locals

import (
	"context"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/zonetoll/zonetoll/shared/report"
)

func ra(s string) report.Addr { return report.AddrFrom(netip.MustParseAddr(s)) }

func testNode() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", Labels: map[string]string{"topology.kubernetes.io/zone": "zone-a"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "198.18.0.1"},
			{Type: corev1.NodeInternalIP, Address: "fd00::1"},
			{Type: corev1.NodeHostName, Address: "node-a"},
		}},
	}
}

func pod(name string, hostNet bool, ips ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.PodSpec{NodeName: "node-a", HostNetwork: hostNet},
	}
	for _, ip := range ips {
		p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(ips) > 0 {
		p.Status.PodIP = ips[0]
	}
	return p
}

func TestAddresses(t *testing.T) {
	got := Addresses(testNode(), []*corev1.Pod{
		pod("web", false, "198.18.0.10", "fd00::10"),
		pod("kube-proxy", true, "198.18.0.1"),
		pod("pending", false),
		pod("mapped", false, "::ffff:198.18.0.11"),
	})
	want := []string{"198.18.0.1", "fd00::1", "198.18.0.10", "fd00::10", "198.18.0.11"}
	if len(got) != len(want) {
		t.Fatalf("Addresses = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("Addresses[%d] = %s, want %s", i, got[i], want[i])
		}
	}
}

func TestSetGrace(t *testing.T) {
	clock := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	s := NewSet(20 * time.Second)
	s.now = func() time.Time { return clock }
	s.Replace([]netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.11")})
	s.Replace([]netip.Addr{netip.MustParseAddr("198.18.0.11")})
	tests := []struct {
		after time.Duration
		addr  string
		want  bool
	}{
		{0, "198.18.0.11", true},
		{0, "198.18.0.10", true}, // just removed: its last traffic is still to be drained
		{20 * time.Second, "198.18.0.10", true},
		{21 * time.Second, "198.18.0.10", false},
		{0, "198.18.0.12", false},
	}
	base := clock
	for _, tt := range tests {
		clock = base.Add(tt.after)
		if got := s.Contains(ra(tt.addr)); got != tt.want {
			t.Errorf("after %s Contains(%s) = %v, want %v", tt.after, tt.addr, got, tt.want)
		}
	}
}

// startWatcher starts a watcher of node-a on cs until the test ends; Start must succeed.
func startWatcher(t *testing.T, cs kubernetes.Interface, set, nodes *Set) *Watcher {
	t.Helper()
	w, err := NewWatcher(cs, "node-a", set, nodes, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); w.Shutdown() })
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWatcherFollowsPods(t *testing.T) {
	cs := fake.NewClientset(testNode(), pod("web", false, "198.18.0.10"))
	set := NewSet(0)
	w := startWatcher(t, cs, set, nil)
	for _, a := range []string{"198.18.0.1", "fd00::1", "198.18.0.10"} {
		if !set.Contains(ra(a)) {
			t.Errorf("%s not local after sync", a)
		}
	}
	if _, err := cs.CoreV1().Pods("default").Create(t.Context(), pod("db", false, "198.18.0.20"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !set.Contains(ra("198.18.0.20")) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !set.Contains(ra("198.18.0.20")) {
		t.Error("new pod's address never became local")
	}
	if w.Node().Labels["topology.kubernetes.io/zone"] != "zone-a" {
		t.Errorf("Node() = %+v", w.Node())
	}
}

func TestWatcherNodeMissing(t *testing.T) {
	w, err := NewWatcher(fake.NewClientset(), "node-a", NewSet(0), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); w.Shutdown() }()
	if err := w.Start(ctx); err == nil {
		t.Error("Start without the Node returned nil")
	}
}

func TestWatcherKnowsAllNodes(t *testing.T) {
	other := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-b"},
		Status:     corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "198.18.9.1"}}},
	}
	cs := fake.NewClientset(testNode(), other, pod("web", false, "198.18.0.10"))
	set, nodes := NewSet(0), NewSet(0)
	startWatcher(t, cs, set, nodes)
	for a, want := range map[string][2]bool{ // local, node
		"198.18.0.1":  {true, true},
		"198.18.9.1":  {false, true},
		"198.18.0.10": {true, false},
	} {
		if set.Contains(ra(a)) != want[0] || nodes.Contains(ra(a)) != want[1] {
			t.Errorf("%s: local %v node %v, want %v", a, set.Contains(ra(a)), nodes.Contains(ra(a)), want)
		}
	}
}
