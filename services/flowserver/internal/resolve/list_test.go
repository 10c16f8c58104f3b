package resolve

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// The pod informer's initial list goes through podlist.List: in pages (not the one-response list from
// the watch cache), every pod trimmed as its page arrives, and the resolver learns every pod.
func TestPagedInitialList(t *testing.T) {
	testcluster.Need(t)
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	if _, err := c.CreateNamespace(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "p", Name: fmt.Sprintf("pod-%d", i), NodeName: "n", IPs: []string{fmt.Sprintf("198.18.0.%d", i+1)}}); err != nil {
			t.Fatal(err)
		}
	}
	rc := rest.CopyConfig(c.Config)
	var lists atomic.Int32
	rc.WrapTransport = countLists(&lists)
	clients, err := kubeclient.NewRESTClients(rc, kubeclient.Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme})
	if err != nil {
		t.Fatal(err)
	}
	core := clients[0]
	mc, err := metadata.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func(old int64) { listPageSize = old }(listPageSize)
	listPageSize = 3
	inf, err := NewInformers(r, core, mc, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	inf.Start(ctx)
	deadline := time.Now().Add(60 * time.Second) // catches a hang; measures nothing
	for !inf.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("informers did not sync")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// client-go 0.37 (WatchListClient, on by default from 0.35) streams the initial state with a watch
	// against a server that supports it, as 1.35+ servers do: no LIST at all, so no unpaged burst of full
	// pods. The paged list (shared/podlist, tested on its own) is the fallback for servers without it.
	if n := lists.Load(); n != 0 {
		t.Errorf("%d pod list requests, want none (the initial state streams)", n)
	}
	if got := r.Stats().LivePods; got != 7 {
		t.Errorf("resolver knows %d pods, want 7", got)
	}
	for _, obj := range inf.podStore.List() {
		p := obj.(*corev1.Pod)
		if len(p.Spec.Containers) != 0 || len(p.Status.PodIPs) != 1 || p.Spec.NodeName != "n" {
			t.Errorf("cached pod %s not trimmed as it arrived: %d containers, IPs %v, node %q", p.Name, len(p.Spec.Containers), p.Status.PodIPs, p.Spec.NodeName)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countLists counts GET requests that list the pod collection (not watches).
func countLists(n *atomic.Int32) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/pods") && r.URL.Query().Get("watch") != "true" {
				n.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
}
