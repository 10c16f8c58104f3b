package podlist

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// listRecorder sits between the REST client and the API server: it counts the pod list requests, notes
// how many pods had been trimmed when each was sent (the page-by-page discipline), and can fail every
// request that continues a list.
type listRecorder struct {
	mu            sync.Mutex
	trimmed       int
	trimmedBefore []int // per list request
	failContinue  bool
}

func (l *listRecorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/pods") {
			l.mu.Lock()
			l.trimmedBefore = append(l.trimmedBefore, l.trimmed)
			fail := l.failContinue && r.URL.Query().Get("continue") != ""
			l.mu.Unlock()
			if fail {
				return &http.Response{StatusCode: http.StatusServiceUnavailable, Status: "503 Service Unavailable",
					Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			}
		}
		return rt.RoundTrip(r)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// trimmedPod is what a caller keeps of a pod: a few fields, no containers.
type trimmedPod struct{ key, node string }

// TestList against a real kube-apiserver: the pages, the selectors and namespace, the trim of each page
// before the next is asked for, the resourceVersion to watch from, and a failure mid-list.
func TestList(t *testing.T) {
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	for _, ns := range []string{"list-a", "list-b"} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	for i := range 7 {
		app := "web"
		if i == 6 {
			app = "db" // the last in key order: a selector that skips it does not add a page
		}
		name := fmt.Sprintf("pod-%d", i)
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "list-a", Name: name, NodeName: "n", Labels: map[string]string{"app": app}}); err != nil {
			t.Fatal(err)
		}
		all = append(all, "list-a/"+name)
	}
	for i := range 2 {
		name := fmt.Sprintf("pod-%d", i)
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "list-b", Name: name, NodeName: "n", Labels: map[string]string{"app": "web"}}); err != nil {
			t.Fatal(err)
		}
		all = append(all, "list-b/"+name)
	}

	tests := []struct {
		name         string
		namespace    string
		opts         metav1.ListOptions
		pageSize     int64
		failContinue bool
		want         []string // keys in list order
		wantRequests int
		wantErr      string
	}{
		{name: "one page by default", namespace: "list-a", want: all[:7], wantRequests: 1},
		{name: "pages of 3", namespace: "list-a", pageSize: 3, want: all[:7], wantRequests: 3},
		{name: "resourceVersion 0 still pages", namespace: "list-a", opts: metav1.ListOptions{ResourceVersion: "0"}, pageSize: 3, want: all[:7], wantRequests: 3},
		{name: "every namespace", pageSize: 4, want: all, wantRequests: 3},
		{name: "label selector", namespace: "list-a", opts: metav1.ListOptions{LabelSelector: "app=web"}, pageSize: 4, want: all[:6], wantRequests: 2},
		{name: "field selector", opts: metav1.ListOptions{FieldSelector: "metadata.namespace=list-b"}, pageSize: 3, want: all[7:], wantRequests: 1},
		{name: "empty namespace", namespace: "list-none", pageSize: 3, want: nil, wantRequests: 1},
		{name: "failure mid-list", namespace: "list-a", pageSize: 3, failContinue: true, wantRequests: 2, wantErr: "listing pods (3 so far)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &listRecorder{failContinue: tt.failContinue}
			rc := rest.CopyConfig(c.Config)
			rc.WrapTransport = rec.wrap
			clients, err := kubeclient.NewRESTClients(rc, kubeclient.Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme})
			if err != nil {
				t.Fatal(err)
			}
			core := clients[0]
			items, rv, err := List(ctx, core, tt.namespace, tt.opts, tt.pageSize, func(p *corev1.Pod) trimmedPod {
				rec.mu.Lock()
				rec.trimmed++
				rec.mu.Unlock()
				return trimmedPod{key: p.Namespace + "/" + p.Name, node: p.Spec.NodeName}
			})
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if len(rec.trimmedBefore) != tt.wantRequests {
				t.Errorf("%d list requests, want %d", len(rec.trimmedBefore), tt.wantRequests)
			}
			// Each page is trimmed before the next is requested: request k finds every pod of the k-1
			// full pages before it trimmed.
			page := int(tt.pageSize)
			if page <= 0 {
				page = DefaultPageSize
			}
			for k, n := range rec.trimmedBefore {
				if n != k*page {
					t.Errorf("list request %d sent with %d pods trimmed, want %d", k+1, n, k*page)
				}
			}
			if tt.wantErr != "" {
				var status apierrors.APIStatus
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &status) {
					t.Errorf("List error %v, want one containing %q that wraps the API status", err, tt.wantErr)
				}
				if items != nil {
					t.Errorf("List returned %d pods with its error", len(items))
				}
				return
			}
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var keys []string
			for _, p := range items {
				if p.node != "n" {
					t.Errorf("pod %s trimmed without its node", p.key)
				}
				keys = append(keys, p.key)
			}
			if !slices.Equal(keys, tt.want) {
				t.Errorf("listed %v, want %v", keys, tt.want)
			}
			if rec.trimmed != len(tt.want) {
				t.Errorf("trim called %d times, want once per pod (%d)", rec.trimmed, len(tt.want))
			}
			if rv == "" {
				t.Error("no resourceVersion to start the watch from")
			}
		})
	}
}
