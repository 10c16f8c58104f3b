package controller

import (
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/logging"
	"github.com/zonetoll/zonetoll/shared/topology"
)

func TestDesired(t *testing.T) {
	opts := Options{ZoneLabels: []string{topology.ZoneLabel, "example.com/zone"}, RegionLabels: []string{topology.RegionLabel}}
	c := &Controller{opts: opts, keys: labelKeys(opts)}
	loc := topology.Location{Zone: "a", Region: "r"}
	tests := []struct {
		name string
		have map[string]string
		loc  topology.Location
		want map[string]string
	}{
		{"unlabelled", nil, loc, map[string]string{topology.ZoneLabel: "a", "example.com/zone": "a", topology.RegionLabel: "r"}},
		{"already right", map[string]string{topology.ZoneLabel: "a", "example.com/zone": "a", topology.RegionLabel: "r", "app": "x"}, loc, map[string]string{}},
		{"one key stale", map[string]string{topology.ZoneLabel: "b", "example.com/zone": "a", topology.RegionLabel: "r"}, loc, map[string]string{topology.ZoneLabel: "a"}},
		{"empty value is not right", map[string]string{topology.ZoneLabel: "", "example.com/zone": "a", topology.RegionLabel: "r"}, loc, map[string]string{topology.ZoneLabel: "a"}},
		{"node without region keeps the pod's region", map[string]string{topology.ZoneLabel: "a", "example.com/zone": "a", topology.RegionLabel: "old"}, topology.Location{Zone: "a"}, map[string]string{}},
	}
	for _, tt := range tests {
		// Through the cache's transform, as the controller sees pods.
		obj, err := c.trimPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Labels: tt.have}})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.desired(obj.(*podInfo), tt.loc); !maps.Equal(got, tt.want) {
			t.Errorf("%s: desired() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCacheBehindOurWrite(t *testing.T) {
	c := &Controller{written: map[string]uint64{}}
	pod := func(rv string) *podInfo { return &podInfo{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}} }
	if c.cacheBehindOurWrite("ns/p", pod("5")) {
		t.Fatal("no write remembered, yet the cache is called stale")
	}
	c.rememberWrite("ns/p", "10")
	if !c.cacheBehindOurWrite("ns/p", pod("9")) {
		t.Error("cache at rv 9 after our write produced rv 10 must count as behind")
	}
	if c.cacheBehindOurWrite("ns/p", pod("10")) {
		t.Error("cache at our write's rv is not behind")
	}
	if _, ok := c.written["ns/p"]; ok {
		t.Error("the record must be dropped once the cache caught up")
	}
	c.rememberWrite("ns/q", "not-a-number")
	if len(c.written) != 0 {
		t.Error("an opaque resourceVersion must not be remembered")
	}
}

func TestBindingTime(t *testing.T) {
	created := metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	scheduled := metav1.NewTime(created.Add(3 * time.Second))
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: created}}
	if got := bindingTime(p); !got.Equal(created.Time) {
		t.Errorf("pod created bound: %v, want creation time", got)
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: scheduled}}
	if got := bindingTime(p); !got.Equal(scheduled.Time) {
		t.Errorf("scheduled pod: %v, want PodScheduled time", got)
	}
}

func TestTrimKeepsOnlyWhatTheLabelerReads(t *testing.T) {
	opts := Options{ZoneLabels: []string{topology.ZoneLabel}, RegionLabels: []string{topology.RegionLabel}}
	c := &Controller{opts: opts, keys: labelKeys(opts)}
	created := metav1.NewTime(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	deleted := metav1.NewTime(created.Add(time.Minute))
	full := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7", CreationTimestamp: created, DeletionTimestamp: &deleted,
			Labels: map[string]string{"app": "x", topology.RegionLabel: "r"}, Annotations: map[string]string{"big": "yes"}},
		Spec:   corev1.PodSpec{NodeName: "n", Containers: []corev1.Container{{Name: "c", Image: "i"}}},
		Status: corev1.PodStatus{PodIP: "198.18.0.1", Conditions: []corev1.PodCondition{{Type: corev1.PodReady}}},
	}
	obj, err := c.trimPod(full)
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*podInfo)
	want := &podInfo{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", ResourceVersion: "7", DeletionTimestamp: &deleted},
		NodeName:   "n", Bound: created.Time, Values: []string{"", "r"},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("trimmed pod = %+v\nwant %+v", p, want)
	}
	// The store computes keys and resource versions from it, as from a pod.
	if key, err := cache.MetaNamespaceKeyFunc(p); err != nil || key != "ns/p" {
		t.Errorf("cache key = %q, %v", key, err)
	}
	// A pod without any of the keys keeps no values at all.
	obj, _ = c.trimPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "q", Labels: map[string]string{"app": "x"}}})
	if v := obj.(*podInfo).Values; v != nil {
		t.Errorf("values of a pod without zone or region = %q, want nil", v)
	}
	// Already trimmed objects and tombstones pass through unchanged.
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: p}
	if got, _ := c.trimPod(tomb); got != tomb {
		t.Errorf("tombstone changed: %v", got)
	}
	if got, _ := c.trimPod(p); got != p {
		t.Errorf("trimmed pod trimmed again: %v", got)
	}
	nodeObj, _ := trimNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{topology.ZoneLabel: "a", "kubernetes.io/hostname": "n"}}})
	if n := nodeObj.(*corev1.Node); len(n.Labels) != 1 || n.Labels[topology.ZoneLabel] != "a" {
		t.Errorf("trimmed node labels = %v, want only the zone", n.Labels)
	}
}

// A scrape can come before the informers start; it once hit a nil node lister.
func TestMetricsBeforeStart(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	// Nothing may be requested before Start: the client points at a port where nothing listens.
	clients, err := kubeclient.NewRESTClients(&rest.Config{Host: "http://127.0.0.1:1"}, kubeclient.Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme})
	if err != nil {
		t.Fatal(err)
	}
	core := clients[0]
	if _, err := New(core, Options{ZoneLabels: []string{topology.ZoneLabel}}, reg, logging.Discard()); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gathering before start: %v", err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}
