package zonelabeler

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPodStatusPatch(t *testing.T) {
	tests := []struct {
		method, path string
		want         string
		ok           bool
	}{
		{http.MethodPatch, "/api/v1/namespaces/bench/pods/pod-00001/status", "pod-00001", true},
		{http.MethodPatch, "/api/v1/namespaces/bench/pods/pod-00001", "", false},      // the labeler's kind of write
		{http.MethodPost, "/api/v1/namespaces/bench/pods", "", false},                 // the create itself
		{http.MethodGet, "/api/v1/namespaces/bench/pods/pod-00001/status", "", false}, // not a write
		{http.MethodPatch, "/api/v1/nodes/node-001/status", "", false},                // a node
		{http.MethodPatch, "/apis/x/v1/namespaces/bench/pods/p/status", "", false},    // another group
		{http.MethodPatch, "/api/v1/namespaces/bench/pods/p/ephemeralcontainers", "", false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, "https://127.0.0.1:6443"+tt.path, nil)
		got, ok := podStatusPatch(req)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s %s: got %q, %v; want %q, %v", tt.method, tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func pod(name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "bench", Labels: labels}, Spec: corev1.PodSpec{NodeName: node}}
}

func TestRecorder(t *testing.T) {
	const zl, rl = "topology.kubernetes.io/zone", "topology.kubernetes.io/region"
	r := newRecorder(2, zl, rl, map[string]string{"n1": "zone-a", "n2": "zone-b"}, map[string]string{"n1": "r", "n2": "r"})
	api := r.wrap(roundTripFunc(func(*http.Request) (*http.Response, error) { return &http.Response{StatusCode: 200}, nil }))
	for _, name := range []string{"p1", "p2"} {
		req := httptest.NewRequest(http.MethodPatch, "https://h/api/v1/namespaces/bench/pods/"+name+"/status", nil)
		if _, err := api.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
	}
	r.observe(pod("p1", "n1", nil))
	r.observe(pod("p2", "n2", nil))
	r.observe(pod("p1", "n1", map[string]string{zl: "zone-a", rl: "r"}))
	select {
	case <-r.allDone:
		t.Fatal("done after one of two pods was labelled")
	default:
	}
	r.observe(pod("p1", "n1", map[string]string{zl: "zone-a", rl: "r", "other": "change"})) // not counted twice
	if got := r.progress(); got != 1 {
		t.Fatalf("progress = %d after one pod labelled (and updated again), want 1", got)
	}
	r.observe(pod("p2", "n2", map[string]string{zl: "zone-a", rl: "r"})) // the wrong zone for n2
	select {
	case <-r.allDone:
	default:
		t.Fatal("not done after both pods were labelled")
	}
	res := r.results()
	if len(res.createToLabel) != 2 || len(res.seenToLabel) != 2 || res.missing != 0 {
		t.Errorf("results: %d create→label, %d seen→label, %d missing; want 2, 2, 0", len(res.createToLabel), len(res.seenToLabel), res.missing)
	}
	for _, d := range slices.Concat(res.createToLabel, res.seenToLabel) {
		if d < 0 {
			t.Errorf("negative latency %v though every label was observed after the create", d)
		}
	}
	if len(res.wrong) != 1 || res.wrong[0] != "p2 on n2: zone=zone-a region=r" {
		t.Errorf("wrong = %q, want p2 flagged for zone-a on a zone-b node", res.wrong)
	}
	if res.lastLabelled.Before(res.lastCreated) {
		t.Error("last label seen before the last create returned")
	}
}

func TestLabelerSettings(t *testing.T) {
	got := labelerSettings([]string{
		"PATH=/bin", "ZONETOLL_BENCH_PODS=100", "ZONETOLL_BENCH_LABELER_KUBE_QPS=200",
		"ZONETOLL_BENCH_LABELER_WORKERS=8", "ZONETOLL_BENCH_LABELER_=x", "ZONETOLL_KUBE_QPS=1",
	})
	want := []string{"ZONETOLL_KUBE_QPS=200", "ZONETOLL_WORKERS=8"}
	if !slices.Equal(got, want) {
		t.Errorf("labelerSettings = %q, want %q", got, want)
	}
}
