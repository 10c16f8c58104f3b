package kubeclient

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
)

// TestNewRESTClientsOnePerGroup: each client speaks its own group version, the core group under /api
// and named groups under /apis.
func TestNewRESTClientsOnePerGroup(t *testing.T) {
	clients, err := NewRESTClients(&rest.Config{Host: "http://127.0.0.1:1"},
		Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme},
		Group{Version: coordinationv1.SchemeGroupVersion, AddToScheme: coordinationv1.AddToScheme})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"/api/v1/namespaces/ns/things", "/apis/coordination.k8s.io/v1/namespaces/ns/things"} {
		if got := clients[i].Get().Namespace("ns").Resource("things").URL().Path; got != want {
			t.Errorf("client %d requests %s, want %s", i, got, want)
		}
	}
}
