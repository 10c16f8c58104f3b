package controller

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/logging"
	"github.com/zonetoll/zonetoll/shared/topology"
)

// request is one API call the controller made, as the API server received it.
type request struct {
	method, path, fieldManager, contentType string
	labels                                  map[string]string // metadata.labels of a patch body
	body                                    string
}

// recorder is the API server end of the controller's REST client: it records every request and
// answers a pod PATCH with status (the patched pod on 200, an API Status otherwise).
type recorder struct {
	status int
	mu     sync.Mutex
	reqs   []request
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rec := request{method: req.Method, path: req.URL.Path, fieldManager: req.URL.Query().Get("fieldManager"),
		contentType: req.Header.Get("Content-Type"), body: string(body)}
	var patch struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &patch); err == nil {
		rec.labels = patch.Metadata.Labels
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if r.status != http.StatusOK {
		reason := map[int]metav1.StatusReason{http.StatusNotFound: metav1.StatusReasonNotFound, http.StatusForbidden: metav1.StatusReasonForbidden}[r.status]
		w.WriteHeader(r.status)
		_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
			Status: metav1.StatusFailure, Reason: reason, Code: int32(r.status), Message: "answered by the test"})
		return
	}
	parts := strings.Split(req.URL.Path, "/") // /api/v1/namespaces/NS/pods/NAME
	_ = json.NewEncoder(w).Encode(corev1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: parts[len(parts)-3], Name: parts[len(parts)-1], ResourceVersion: "100"}})
}

// newSyncController is a controller whose REST client talks to rec; its informers never start: the
// test fills their indexers, as sample-controller's tests do.
func newSyncController(t *testing.T, rec *recorder, opts Options) (*Controller, *prometheus.Registry) {
	t.Helper()
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	clients, err := kubeclient.NewRESTClients(&rest.Config{Host: srv.URL}, kubeclient.Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme})
	if err != nil {
		t.Fatal(err)
	}
	core := clients[0]
	reg := prometheus.NewPedanticRegistry()
	c, err := New(core, opts, reg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	return c, reg
}

func syncPod(name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: "10", Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node},
	}
}

func syncNode(name, zone, region string) *corev1.Node {
	labels := map[string]string{"kubernetes.io/hostname": name}
	if zone != "" {
		labels[topology.ZoneLabel] = zone
	}
	if region != "" {
		labels[topology.RegionLabel] = region
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

// TestSync calls sync directly on a key with the pod and node caches filled, and checks the one PATCH it
// sends, or that it sends none.
func TestSync(t *testing.T) {
	const (
		zone   = topology.ZoneLabel
		region = topology.RegionLabel
	)
	std := Options{ZoneLabels: []string{zone}, RegionLabels: []string{region}}
	deleting := syncPod("p", "n1", nil)
	deleting.DeletionTimestamp = &metav1.Time{}
	tests := []struct {
		name    string
		opts    Options // std if zero
		pods    []*corev1.Pod
		nodes   []*corev1.Node
		written map[string]uint64 // resourceVersions of earlier patches of ours
		key     string            // "ns/p" if empty
		status  int               // answer to a PATCH; 200 if zero
		// want is the labels of the one PATCH expected; nil: no request at all.
		want        map[string]string
		wantErr     string // substring; "" for success
		wantResult  string // label_writes_total result counted; "" for none
		wantWaiting int
	}{
		{name: "labels missing", pods: []*corev1.Pod{syncPod("p", "n1", map[string]string{"app": "web"})}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			want: map[string]string{zone: "zone-a", region: "region-1"}, wantResult: "success"},
		{name: "labels already right", pods: []*corev1.Pod{syncPod("p", "n1", map[string]string{zone: "zone-a", region: "region-1"})}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")}},
		{name: "zone changed", pods: []*corev1.Pod{syncPod("p", "n1", map[string]string{zone: "zone-a", region: "region-1"})}, nodes: []*corev1.Node{syncNode("n1", "zone-b", "region-1")},
			want: map[string]string{zone: "zone-b"}, wantResult: "success"},
		{name: "region only missing", pods: []*corev1.Pod{syncPod("p", "n1", map[string]string{zone: "zone-a"})}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			want: map[string]string{region: "region-1"}, wantResult: "success"},
		{name: "node without region: zone only, pod's region left alone", pods: []*corev1.Pod{syncPod("p", "n1", map[string]string{region: "old"})}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "")},
			want: map[string]string{zone: "zone-a"}, wantResult: "success"},
		{name: "zone keys only", opts: Options{ZoneLabels: []string{zone, "example.com/zone"}}, pods: []*corev1.Pod{syncPod("p", "n1", nil)}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			want: map[string]string{zone: "zone-a", "example.com/zone": "zone-a"}, wantResult: "success"},
		{name: "beta node labels", pods: []*corev1.Pod{syncPod("p", "n1", nil)},
			nodes: []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{topology.BetaZoneLabel: "zone-c", topology.BetaRegionLabel: "region-2"}}}},
			want:  map[string]string{zone: "zone-c", region: "region-2"}, wantResult: "success"},
		{name: "node missing", pods: []*corev1.Pod{syncPod("p", "n1", nil)}, wantWaiting: 1},
		{name: "node without zone", pods: []*corev1.Pod{syncPod("p", "n1", nil)}, nodes: []*corev1.Node{syncNode("n1", "", "")}, wantWaiting: 1},
		{name: "pod missing", nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")}},
		{name: "pod not yet bound", pods: []*corev1.Pod{syncPod("p", "", nil)}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")}},
		{name: "pod being deleted", pods: []*corev1.Pod{deleting}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")}},
		{name: "malformed key", key: "a/b/c"},
		{name: "cache behind our own write", pods: []*corev1.Pod{syncPod("p", "n1", nil)}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			written: map[string]uint64{"ns/p": 11}},
		{name: "cache caught up with our write", pods: []*corev1.Pod{syncPod("p", "n1", nil)}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			written: map[string]uint64{"ns/p": 10}, want: map[string]string{zone: "zone-a", region: "region-1"}, wantResult: "success"},
		{name: "pod gone at the API: NotFound is done", pods: []*corev1.Pod{syncPod("p", "n1", nil)}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			status: http.StatusNotFound, want: map[string]string{zone: "zone-a", region: "region-1"}, wantResult: "not_found"},
		{name: "forbidden is retried and names the RBAC", pods: []*corev1.Pod{syncPod("p", "n1", nil)}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			status: http.StatusForbidden, want: map[string]string{zone: "zone-a", region: "region-1"}, wantErr: "ClusterRole", wantResult: "forbidden"},
		{name: "server error is retried", pods: []*corev1.Pod{syncPod("p", "n1", nil)}, nodes: []*corev1.Node{syncNode("n1", "zone-a", "region-1")},
			status: http.StatusInternalServerError, want: map[string]string{zone: "zone-a", region: "region-1"}, wantErr: "patching labels of pod ns/p on node n1", wantResult: "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.ZoneLabels == nil {
				opts = std
			}
			rec := &recorder{status: tt.status}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			c, reg := newSyncController(t, rec, opts)
			// Fill the caches the way the informers would: through their transforms.
			for _, p := range tt.pods {
				obj, err := c.trimPod(p.DeepCopy())
				if err != nil {
					t.Fatal(err)
				}
				if err := c.podIndexer.Add(obj); err != nil {
					t.Fatal(err)
				}
			}
			nodeIndexer := c.informers[1].GetIndexer() // New makes the pod informer, then the node informer
			for _, n := range tt.nodes {
				obj, err := trimNode(n.DeepCopy())
				if err != nil {
					t.Fatal(err)
				}
				if err := nodeIndexer.Add(obj); err != nil {
					t.Fatal(err)
				}
			}
			maps.Copy(c.written, tt.written)
			key := tt.key
			if key == "" {
				key = "ns/p"
			}
			cached := []any{}
			for _, o := range c.podIndexer.List() {
				cached = append(cached, o.(*podInfo).DeepCopyObject())
			}

			err := c.sync(t.Context(), key)

			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("sync: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("sync error %v, want one containing %q", err, tt.wantErr)
			}
			rec.mu.Lock()
			reqs := rec.reqs
			rec.mu.Unlock()
			if tt.want == nil {
				if len(reqs) != 0 {
					t.Errorf("sync sent %+v, want no request", reqs)
				}
			} else {
				if len(reqs) != 1 {
					t.Fatalf("sync sent %d requests (%+v), want one PATCH", len(reqs), reqs)
				}
				r := reqs[0]
				if r.method != http.MethodPatch || r.path != "/api/v1/namespaces/ns/pods/p" || r.fieldManager != FieldManager ||
					r.contentType != "application/merge-patch+json" {
					t.Errorf("request %s %s fieldManager=%q Content-Type %q, want a merge PATCH of pod ns/p by %s", r.method, r.path, r.fieldManager, r.contentType, FieldManager)
				}
				if !maps.Equal(r.labels, tt.want) {
					t.Errorf("patch body %s sets labels %v, want %v", r.body, r.labels, tt.want)
				}
			}
			for _, res := range []string{"success", "not_found", "forbidden", "error"} {
				want := 0.0
				if res == tt.wantResult {
					want = 1
				}
				if got := testutil.ToFloat64(c.metrics.writes.WithLabelValues(res)); got != want {
					t.Errorf("label_writes_total{result=%q} = %v, want %v", res, got, want)
				}
			}
			if got := c.waitingCount(); got != tt.wantWaiting {
				t.Errorf("%d pods waiting for a zone, want %d", got, tt.wantWaiting)
			}
			if tt.wantResult == "success" {
				// The patched pod's resourceVersion is remembered until the cache shows it.
				if got := c.written["ns/p"]; got != 100 {
					t.Errorf("remembered resourceVersion %d after the patch, want 100", got)
				}
			}
			// sync never changes cached objects.
			if got := append([]any{}, c.podIndexer.List()...); !reflect.DeepEqual(got, cached) {
				t.Errorf("sync changed the cache: %+v, was %+v", got, cached)
			}
			if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
				t.Errorf("metric lint: %v %v", problems, err)
			}
		})
	}
}
