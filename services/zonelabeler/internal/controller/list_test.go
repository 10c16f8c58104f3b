package controller

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/logging"
	"github.com/zonetoll/zonetoll/shared/topology"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// The initial pod list comes in pages and fills the cache with podInfo only; the selector applies, and
// the watch that follows the list delivers what comes after.
func TestPagedInitialList(t *testing.T) {
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	const ns = "list-test"
	if _, err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: "n", Zone: "zone-a", Region: "region-1"}); err != nil {
		t.Fatal(err)
	}
	const selected = 7
	for i := range selected {
		labels := map[string]string{"app": "web"}
		if i == 0 {
			labels[topology.ZoneLabel] = "zone-a"
		}
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: ns, Name: fmt.Sprintf("web-%d", i), NodeName: "n", Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: ns, Name: "db", NodeName: "n", Labels: map[string]string{"app": "db"}}); err != nil {
		t.Fatal(err)
	}

	clients, err := kubeclient.NewRESTClients(c.Config, kubeclient.Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme})
	if err != nil {
		t.Fatal(err)
	}
	core := clients[0]
	ctrl, err := New(core, Options{ZoneLabels: []string{topology.ZoneLabel}, RegionLabels: []string{topology.RegionLabel}, PodSelector: "app=web"},
		prometheus.NewRegistry(), logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	ctrl.listPageSize = 3
	lists := func() float64 {
		raw, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fams, err := metricstest.Parse(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatal(err)
		}
		return fams.Sum("apiserver_request_total", map[string]string{"verb": "LIST", "resource": "pods"})
	}
	before := lists()
	ctrl.Start(ctx)
	if !ctrl.WaitForSync(ctx) {
		t.Fatal("caches did not sync")
	}
	// 7 selected pods in pages of 3: three requests.
	// client-go 0.37 (WatchListClient, on by default from 0.35) streams the initial state with a watch
	// against a server that supports it, as 1.35+ servers do: no LIST at all, so no unpaged burst of full
	// pods. The paged list (shared/podlist, tested on its own) is the fallback for servers without it.
	if got := lists() - before; got != 0 {
		t.Errorf("API server answered %v pod lists, want none (the initial state streams)", got)
	}
	keys := ctrl.podIndexer.ListKeys()
	if len(keys) != selected {
		t.Fatalf("cache holds %d pods (%v), want the %d selected", len(keys), keys, selected)
	}
	for _, obj := range ctrl.podIndexer.List() {
		p, ok := obj.(*podInfo)
		if !ok {
			t.Fatalf("cache holds a %T, want *podInfo", obj)
		}
		if p.Namespace != ns || !strings.HasPrefix(p.Name, "web-") || p.NodeName != "n" || p.ResourceVersion == "" || p.Bound.IsZero() {
			t.Errorf("cached pod %+v lacks what the labeler reads", p)
		}
		if want := p.Name == "web-0"; (p.value(0) == "zone-a") != want {
			t.Errorf("pod %s: zone value %q", p.Name, p.value(0))
		}
	}
	byNode, err := ctrl.podIndexer.ByIndex(nodeIndex, "n")
	if err != nil || len(byNode) != selected {
		t.Errorf("node index holds %d pods (%v), want %d", len(byNode), err, selected)
	}
	// After the list, the watch: a new pod reaches the cache.
	if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: ns, Name: "web-late", NodeName: "n", Labels: map[string]string{"app": "web"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second) // catches a hang; measures nothing
	for {
		if _, ok, _ := ctrl.podIndexer.GetByKey(ns + "/web-late"); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("pod created after the list never reached the cache")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
