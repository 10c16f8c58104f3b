package resolve

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// The initial pod list comes in pages (not the one-response list from the watch cache) and every pod is
// trimmed as its page arrives.
func TestPagedInitialList(t *testing.T) {
	testcluster.Need(t)
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	if _, err := c.CreateNamespace(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "p", Name: fmt.Sprintf("pod-%d", i), IPs: []string{fmt.Sprintf("198.18.0.%d", i+1)}}); err != nil {
			t.Fatal(err)
		}
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	rc := rest.CopyConfig(c.Config)
	var lists atomic.Int32
	rc.WrapTransport = countLists(&lists)
	core, err := kubeclient.NewRESTClient(rc, scheme, corev1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	got, err := listPodsPaged(ctx, core, metav1.ListOptions{ResourceVersion: "0"}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 7 || got.ResourceVersion == "" {
		t.Fatalf("listed %d pods (resourceVersion %q), want 7 and a resourceVersion to watch from", len(got.Items), got.ResourceVersion)
	}
	if n := lists.Load(); n != 3 {
		t.Errorf("%d list requests, want 3 pages of at most 3", n)
	}
	for _, p := range got.Items {
		if len(p.Spec.Containers) != 0 || len(p.Status.PodIPs) != 1 {
			t.Errorf("pod %s not trimmed as it arrived: %d containers, IPs %v", p.Name, len(p.Spec.Containers), p.Status.PodIPs)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// countLists counts GET requests for the pod collection.
func countLists(n *atomic.Int32) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/pods") {
				n.Add(1)
			}
			return rt.RoundTrip(r)
		})
	}
}
