package testcluster

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/zonetoll/zonetoll/shared/kubeversion"
)

// TestTrafficDistributionDiscovery checks shared/kubeversion against the real API server (of whichever
// release runs: make test runs the newest and, with ZONETOLL_TESTCLUSTER_KUBERNETES_VERSION=oldest, the
// oldest supported): what it reports, read by an identity without any RBAC rule of its own, must be
// exactly what the server's validation accepts, which a server-side dry run of a Service with each value
// shows, and what it lists when it refuses a value.
func TestTrafficDistributionDiscovery(t *testing.T) {
	c := StartT(t, Options{})
	ctx := t.Context()
	const ns = "kubeversion"
	if _, err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	sa, err := c.ServiceAccount(ctx, ServiceAccountSpec{Namespace: ns, Name: "no-rules"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := kubernetes.NewForConfig(sa.Config)
	if err != nil {
		t.Fatal(err)
	}
	got, err := kubeversion.Discover(ctx, plain.Discovery().RESTClient())
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	t.Logf("%s: %+v", c.Version, got)
	if got.ServerVersion != c.Version || !got.Field || !got.SchemaChecked {
		t.Errorf("Discover = %+v, want server %s, the field, checked against the schema", got, c.Version)
	}
	if v, ann := got.SameZone(); v != kubeversion.PreferSameZone || ann != "" {
		t.Errorf("SameZone() = %q, %q; want PreferSameZone on every supported release", v, ann)
	}

	service := func(name, td string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{{Port: 80}},
				TrafficDistribution: &td}}
	}
	dryRun := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	for _, v := range got.Values {
		if _, err := c.Client.CoreV1().Services(ns).Create(ctx, service("accepted", v), dryRun); err != nil {
			t.Errorf("the server refused trafficDistribution %s, which Discover reported: %v", v, err)
		}
	}
	_, err = c.Client.CoreV1().Services(ns).Create(ctx, service("refused", "PreferSameRegion"), dryRun)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("dry run with an unknown trafficDistribution: %v, want Invalid", err)
	}
	// "Unsupported value: "PreferSameRegion": supported values: "PreferClose", "PreferSameZone", ..."
	_, list, ok := strings.Cut(err.Error(), "supported values:")
	if !ok {
		t.Fatalf("the server's refusal lists no supported values: %v", err)
	}
	var serverValues []string
	for _, m := range regexp.MustCompile(`"([A-Za-z]+)"`).FindAllStringSubmatch(list, -1) {
		serverValues = append(serverValues, m[1])
	}
	slices.Sort(serverValues)
	want := slices.Sorted(slices.Values(got.Values))
	if !slices.Equal(serverValues, want) {
		t.Errorf("the server accepts %v, Discover reported %v", serverValues, want)
	}
}
