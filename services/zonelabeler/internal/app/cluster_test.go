package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/shared/config"
	"github.com/zonetoll/zonetoll/shared/topology"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// The permissions zonelabeler needs; the deploy manifests grant exactly these (docs/zonelabeler.md).
var (
	clusterRules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "patch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	}
	leaseRules = []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
	}
)

const (
	zoneA, zoneB, zoneC = "zone-a", "zone-b", "zone-c"
	region              = "region-1"
)

type fixture struct {
	t   *testing.T
	c   *testcluster.Cluster
	ctx context.Context
	ns  string
}

func newFixture(t *testing.T) *fixture {
	c := testcluster.StartT(t, testcluster.Options{})
	f := &fixture{t: t, c: c, ctx: t.Context(), ns: "zl-test"}
	f.namespace(f.ns)
	return f
}

func (f *fixture) namespace(name string) {
	f.t.Helper()
	if _, err := f.c.CreateNamespace(f.ctx, name); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) node(name, zone, region string) {
	f.t.Helper()
	if _, err := f.c.CreateNode(f.ctx, testcluster.NodeSpec{Name: name, Zone: zone, Region: region}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) pod(ns, name, node string, labels map[string]string) {
	f.t.Helper()
	if _, err := f.c.CreatePod(f.ctx, testcluster.PodSpec{Namespace: ns, Name: name, NodeName: node, Labels: labels}); err != nil {
		f.t.Fatal(err)
	}
}

// labeler runs zonelabeler in-process with a kubeconfig for the admin, or for restricted credentials.
func (f *fixture) labeler(env map[string]string, creds *rest.Config) *servicetest.Service {
	f.t.Helper()
	kubeconfig := f.c.Kubeconfig
	if creds != nil {
		kubeconfig = testcluster.KubeconfigT(f.t, creds)
	}
	full := map[string]string{
		"ZONETOLL_LEADER_ELECTION_NAMESPACE":      f.ns,
		"ZONETOLL_LEADER_ELECTION_LEASE_DURATION": "4s",
		"ZONETOLL_LEADER_ELECTION_RENEW_DEADLINE": "3s",
		"ZONETOLL_LEADER_ELECTION_RETRY_PERIOD":   "500ms",
		"ZONETOLL_LOG_LEVEL":                      "debug",
	}
	for k, v := range env {
		full[k] = v
	}
	svc := servicetest.Start(f.t, Spec(), full, "--kubeconfig", kubeconfig)
	servicetest.WaitFor(f.t, "labeler ready (caches synced)", 0, servicetest.Ready(svc.URL))
	return svc
}

// counted waits until svc's metric has reached want, then returns its value. The controller counts a
// write once the PATCH has returned, which may come after the test saw the label through the API (CI
// once read 0 just after): a test waits for the count, then checks it is exactly what it wants.
func (f *fixture) counted(svc *servicetest.Service, name string, labels map[string]string, want float64) float64 {
	f.t.Helper()
	f.waitFor(fmt.Sprintf("%s%v to reach %v", name, labels, want), func() (bool, string) {
		v := metric(f.t, svc, name, labels)
		return v >= want, fmt.Sprint(v)
	}, 0)
	return metric(f.t, svc, name, labels)
}

// waitFor is servicetest.WaitFor; timeout 0 means 60 s.
func (f *fixture) waitFor(what string, cond func() (bool, string), timeout time.Duration) {
	f.t.Helper()
	servicetest.WaitFor(f.t, what, timeout, cond)
}

func (f *fixture) labels(ns, name string) map[string]string {
	f.t.Helper()
	p, err := f.c.Client.CoreV1().Pods(ns).Get(f.ctx, name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return p.Labels
}

// waitLabelled waits until the pod carries exactly the zone and region given ("" region: no region label).
func (f *fixture) waitLabelled(ns, name, zone, region string) {
	f.t.Helper()
	f.waitFor(fmt.Sprintf("pod %s/%s labelled %s/%s", ns, name, zone, region), func() (bool, string) {
		l := f.labels(ns, name)
		return l[topology.ZoneLabel] == zone && l[topology.RegionLabel] == region, fmt.Sprint(l)
	}, 0)
}

// patches counts the label writes the API server received: PATCH on pods, not on a subresource (the
// test helpers set pod status through the status subresource).
func (f *fixture) patches() float64 {
	f.t.Helper()
	raw, err := f.c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(f.ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	fams, err := metricstest.Parse(strings.NewReader(string(raw)))
	if err != nil {
		f.t.Fatal(err)
	}
	return fams.Sum("apiserver_request_total", map[string]string{"verb": "PATCH", "resource": "pods", "subresource": ""})
}

func metric(t *testing.T, svc *servicetest.Service, name string, labels map[string]string) float64 {
	t.Helper()
	return metricstest.Scrape(t, svc.URL+"/metrics").Sum(name, labels)
}

func TestLabelsEveryPodExactlyOnce(t *testing.T) {
	f := newFixture(t)
	f.node("n-a", zoneA, region)
	f.node("n-b", zoneB, region)
	right := map[string]string{topology.ZoneLabel: zoneB, topology.RegionLabel: region}
	f.pod(f.ns, "before", "n-a", nil)                                                // needs labels
	f.pod(f.ns, "right", "n-b", right)                                               // already right: no write
	f.pod(f.ns, "wrong", "n-a", map[string]string{topology.ZoneLabel: "stale-zone"}) // wrong zone
	base := f.patches()

	svc := f.labeler(nil, nil)
	f.waitLabelled(f.ns, "before", zoneA, region)
	f.waitLabelled(f.ns, "wrong", zoneA, region)
	f.pod(f.ns, "after", "n-b", map[string]string{"app": "web"})
	f.waitLabelled(f.ns, "after", zoneB, region)
	if l := f.labels(f.ns, "after"); l["app"] != "web" {
		t.Errorf("the labeler removed the pod's own label: %v", l)
	}

	// A pod created unscheduled gets its labels when it is bound.
	pending := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pending", Namespace: f.ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: testcluster.PauseImage}}}}
	if _, err := f.c.Client.CoreV1().Pods(f.ns).Create(f.ctx, pending, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Client.CoreV1().Pods(f.ns).Bind(f.ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: "pending", Namespace: f.ns},
		Target:     corev1.ObjectReference{Kind: "Node", Name: "n-b"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitLabelled(f.ns, "pending", zoneB, region)

	if got := f.patches() - base; got != 4 {
		t.Errorf("API server saw %v label writes, want exactly 4 (before, wrong, after, pending)", got)
	}
	if got := f.counted(svc, "zonetoll_zonelabeler_label_writes_total", map[string]string{"result": "success"}, 4); got != 4 {
		t.Errorf("label_writes_total{result=success} = %v, want 4", got)
	}
	if got := metric(t, svc, "zonetoll_zonelabeler_binding_to_label_seconds", nil); got < 2 {
		t.Errorf("binding_to_label_seconds has %v observations, want at least 2 (pods bound after start)", got)
	}
	if got := metric(t, svc, "zonetoll_zonelabeler_nodes", map[string]string{"zone": zoneA}); got != 1 {
		t.Errorf("nodes{zone=%s} = %v, want 1", zoneA, got)
	}

	// A restart checks every pod again and writes nothing: all are right.
	if code, out := svc.Stop(); code != 0 {
		t.Fatalf("labeler exit %d:\n%s", code, out)
	}
	again := f.labeler(nil, nil)
	f.waitFor("restarted labeler to check all 5 pods", func() (bool, string) {
		fams := metricstest.Scrape(t, again.URL+"/metrics")
		adds := fams.Sum("zonetoll_zonelabeler_workqueue_adds_total", nil)
		depth := fams.Sum("zonetoll_zonelabeler_workqueue_depth", nil)
		work := fams.Sum("zonetoll_zonelabeler_workqueue_work_duration_seconds", nil)
		return adds >= 5 && depth == 0 && work >= 5, fmt.Sprintf("adds=%v depth=%v done=%v", adds, depth, work)
	}, 0)
	if got := f.patches() - base; got != 4 {
		t.Errorf("after a restart the API server saw %v label writes in total, want still 4", got)
	}
}

func TestNodeIsTheTruth(t *testing.T) {
	f := newFixture(t)
	f.node("n-nozone", "", "")
	f.node("n-b", zoneB, region)
	f.pod(f.ns, "p1", "n-nozone", nil)
	f.pod(f.ns, "p2", "n-nozone", nil)
	f.pod(f.ns, "ghost", "n-missing", nil) // bound to a node that does not exist (yet)
	svc := f.labeler(nil, nil)

	f.waitFor("pods waiting for a zone", func() (bool, string) {
		v := metric(t, svc, "zonetoll_zonelabeler_pods_waiting_for_zone", nil)
		return v == 3, fmt.Sprintf("waiting=%v", v)
	}, 0)
	if l := f.labels(f.ns, "p1"); l[topology.ZoneLabel] != "" {
		t.Fatalf("pod on a node without zone got a zone label: %v", l)
	}
	if got := metric(t, svc, "zonetoll_zonelabeler_nodes", map[string]string{"zone": ""}); got != 1 {
		t.Errorf("nodes{zone=\"\"} = %v, want 1", got)
	}

	setNodeLabels := func(node string, labels map[string]any) {
		t.Helper()
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
		if _, err := f.c.Client.CoreV1().Nodes().Patch(f.ctx, node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// The node gets a zone (no region yet): its pods follow, the waiting gauge drops.
	setNodeLabels("n-nozone", map[string]any{topology.ZoneLabel: zoneA})
	f.waitLabelled(f.ns, "p1", zoneA, "")
	f.waitLabelled(f.ns, "p2", zoneA, "")
	// The node's zone changes and it gains a region: every pod on it follows.
	setNodeLabels("n-nozone", map[string]any{topology.ZoneLabel: zoneC, topology.RegionLabel: region})
	f.waitLabelled(f.ns, "p1", zoneC, region)
	f.waitLabelled(f.ns, "p2", zoneC, region)
	// The missing node appears.
	f.node("n-missing", zoneB, region)
	f.waitLabelled(f.ns, "ghost", zoneB, region)
	f.waitFor("nobody waiting", func() (bool, string) {
		v := metric(t, svc, "zonetoll_zonelabeler_pods_waiting_for_zone", nil)
		return v == 0, fmt.Sprintf("waiting=%v", v)
	}, 0)

	// A deleted node leaves the per-zone gauge.
	if err := f.c.Client.CoreV1().Nodes().Delete(f.ctx, "n-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("deleted node gone from the gauge", func() (bool, string) {
		fams := metricstest.Scrape(t, svc.URL+"/metrics")
		b := fams.Sum("zonetoll_zonelabeler_nodes", map[string]string{"zone": zoneB})
		return b == 1, fmt.Sprintf("nodes{zone-b}=%v (n-missing is in zone-b too)", b)
	}, 0)
	if got := f.patches(); got != 5 {
		t.Errorf("API server saw %v label writes, want 5 (p1, p2 twice each; ghost once)", got)
	}
}

func TestFilters(t *testing.T) {
	f := newFixture(t)
	f.namespace("other")
	f.namespace("excluded")
	f.node("n-a", zoneA, region)
	f.pod(f.ns, "web", "n-a", map[string]string{"app": "web"})
	f.pod(f.ns, "batch-web", "n-a", map[string]string{"app": "web", "batch": "true"})
	f.pod(f.ns, "db", "n-a", map[string]string{"app": "db"})
	f.pod("other", "web", "n-a", map[string]string{"app": "web"})
	f.pod("excluded", "web", "n-a", map[string]string{"app": "web"})

	f.labeler(map[string]string{
		"ZONETOLL_NAMESPACES":         f.ns + ",excluded",
		"ZONETOLL_EXCLUDE_NAMESPACES": "excluded",
		"ZONETOLL_POD_SELECTOR":       "app in (web),!batch",
		"ZONETOLL_ZONE_LABELS":        topology.ZoneLabel + ",example.com/zone",
	}, nil)
	f.waitLabelled(f.ns, "web", zoneA, region)
	if l := f.labels(f.ns, "web"); l["example.com/zone"] != zoneA {
		t.Errorf("second zone key not written: %v", l)
	}
	// Give the labeler a full pass to (wrongly) touch the others, then check it did not.
	f.pod(f.ns, "marker", "n-a", map[string]string{"app": "web"})
	f.waitLabelled(f.ns, "marker", zoneA, region)
	for _, p := range [][2]string{{f.ns, "batch-web"}, {f.ns, "db"}, {"other", "web"}, {"excluded", "web"}} {
		if l := f.labels(p[0], p[1]); l[topology.ZoneLabel] != "" {
			t.Errorf("pod %s/%s is outside the filters but was labelled: %v", p[0], p[1], l)
		}
	}
	if got := f.patches(); got != 2 {
		t.Errorf("API server saw %v label writes, want 2", got)
	}
}

func TestBadSettingsStopAtStart(t *testing.T) {
	tests := []struct{ env, want string }{
		{"ZONETOLL_POD_SELECTOR=app in (", `invalid setting ZONETOLL_POD_SELECTOR="app in ("`},
		{"ZONETOLL_ZONE_LABELS=not a key", `invalid setting ZONETOLL_ZONE_LABELS="not a key"`},
		{"ZONETOLL_WORKERS=0", `invalid setting ZONETOLL_WORKERS="0"`},
		{"ZONETOLL_LEADER_ELECTION_RENEW_DEADLINE=30s", `invalid setting ZONETOLL_LEADER_ELECTION_RENEW_DEADLINE="30s"`},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			k, v, _ := strings.Cut(tt.env, "=")
			t.Setenv(k, v)
			var cfg Config
			_, err := config.Load(&cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want %q", err, tt.want)
			}
		})
	}
	servicetest.HelpLists(t, Spec(), "ZONETOLL_ZONE_LABELS", "ZONETOLL_POD_SELECTOR", "ZONETOLL_LEADER_ELECTION_LEASE_DURATION", "ZONETOLL_KUBE_QPS")
}

func TestLeaderHandOver(t *testing.T) {
	f := newFixture(t)
	f.node("n-a", zoneA, region)
	first := f.labeler(nil, nil)
	f.waitFor("first replica leads", func() (bool, string) {
		v := metric(t, first, "zonetoll_zonelabeler_leader", nil)
		return v == 1, fmt.Sprintf("leader=%v", v)
	}, 0)
	second := f.labeler(nil, nil)
	f.pod(f.ns, "p1", "n-a", nil)
	f.waitLabelled(f.ns, "p1", zoneA, region)
	if v := metric(t, second, "zonetoll_zonelabeler_leader", nil); v != 0 {
		t.Fatalf("second replica leader=%v while the first leads", v)
	}
	if v := metric(t, second, "zonetoll_zonelabeler_label_writes_total", nil); v != 0 {
		t.Errorf("the standby replica wrote %v labels", v)
	}
	// The leader stops (as on a rolling update): it releases the lease and the standby takes over.
	if code, out := first.Stop(); code != 0 {
		t.Fatalf("first replica exit %d:\n%s", code, out)
	}
	f.waitFor("second replica leads", func() (bool, string) {
		v := metric(t, second, "zonetoll_zonelabeler_leader", nil)
		return v == 1, fmt.Sprintf("leader=%v", v)
	}, 0)
	f.pod(f.ns, "p2", "n-a", nil)
	f.waitLabelled(f.ns, "p2", zoneA, region)
	if v := f.counted(second, "zonetoll_zonelabeler_label_writes_total", map[string]string{"result": "success"}, 1); v != 1 {
		t.Errorf("new leader wrote %v labels, want 1 (p2 only: p1 was already right)", v)
	}
	if got := f.patches(); got != 2 {
		t.Errorf("API server saw %v label writes, want 2", got)
	}
}

func TestWithoutPatchPermission(t *testing.T) {
	f := newFixture(t)
	f.node("n-a", zoneA, region)
	f.pod(f.ns, "p1", "n-a", nil)
	readOnly := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}},
		{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
	}
	sa, err := f.c.ServiceAccount(f.ctx, testcluster.ServiceAccountSpec{Namespace: f.ns, Name: "zonelabeler", Rules: leaseRules, ClusterRules: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	svc := f.labeler(nil, sa.Config)
	f.waitFor("a forbidden write counted", func() (bool, string) {
		v := metric(t, svc, "zonetoll_zonelabeler_label_writes_total", map[string]string{"result": "forbidden"})
		return v >= 2, fmt.Sprintf("forbidden=%v", v)
	}, 0)
	// Still alive and serving, nothing written.
	if l := f.labels(f.ns, "p1"); l[topology.ZoneLabel] != "" {
		t.Fatalf("pod labelled without permission: %v", l)
	}
	if v := metric(t, svc, "zonetoll_zonelabeler_workqueue_retries_total", nil); v < 1 {
		t.Errorf("no retry counted after a forbidden write")
	}
	// Granting the permission lets the retries succeed: the error was not fatal.
	if _, err := f.c.ServiceAccount(f.ctx, testcluster.ServiceAccountSpec{Namespace: f.ns, Name: "zonelabeler-granted", ClusterRules: clusterRules}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "zonelabeler-grant-patch"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRoleOf(t, f, "zonelabeler-granted")},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: f.ns, Name: "zonelabeler"}},
	}
	if _, err := f.c.Client.RbacV1().ClusterRoleBindings().Create(f.ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitLabelled(f.ns, "p1", zoneA, region)
	_, out := svc.Stop()
	if !strings.Contains(out, "forbidden") || !strings.Contains(out, f.ns+"/p1") {
		t.Errorf("log does not name the pod and the reason:\n%s", out)
	}
}

// clusterRoleOf finds the ClusterRole the test cluster created for a service account.
func clusterRoleOf(t *testing.T, f *fixture, sa string) string {
	t.Helper()
	bindings, err := f.c.Client.RbacV1().ClusterRoleBindings().List(f.ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bindings.Items {
		for _, s := range b.Subjects {
			if s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == f.ns {
				return b.RoleRef.Name
			}
		}
	}
	t.Fatalf("no ClusterRoleBinding for service account %s", sa)
	return ""
}

func TestSurvivesAPIServerRestart(t *testing.T) {
	f := newFixture(t)
	f.node("n-a", zoneA, region)
	f.pod(f.ns, "p1", "n-a", nil)
	svc := f.labeler(nil, nil)
	f.waitLabelled(f.ns, "p1", zoneA, region)
	// An outage longer than the lease renew deadline: the labeler loses the lease, must not exit, and must
	// take it again and label what arrives after the API server is back.
	if err := f.c.RestartAPIServer(f.ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	f.pod(f.ns, "p2", "n-a", nil)
	f.waitLabelled(f.ns, "p2", zoneA, region)
	f.waitFor("labeler leads again", func() (bool, string) {
		v := metric(t, svc, "zonetoll_zonelabeler_leader", nil)
		return v == 1, fmt.Sprintf("leader=%v", v)
	}, 0)
	if got := f.patches(); got != 1 {
		// The API server's counters restart with it: only writes after the restart are counted here.
		t.Errorf("API server saw %v label writes since its restart, want 1 (p2)", got)
	}
}
