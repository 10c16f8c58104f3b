package app

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authnv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/reportpost"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// ClusterRules are the permissions flowserver needs; the deploy manifests grant exactly these
// (docs/flowserver.md), and every cluster test runs the server with a token that has only them.
var ClusterRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods", "nodes", "services"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
}

const ns = "zonetoll"

type fixture struct {
	t        *testing.T
	c        *testcluster.Cluster
	ctx      context.Context
	server   string // kubeconfig with only ClusterRules
	agent    string // token of zonetoll/flowagent bound to no pod, as kubectl create token makes it
	intruder string // token of zonetoll/intruder, valid but not allowed
}

func newFixture(t *testing.T) *fixture {
	c := testcluster.StartT(t, testcluster.Options{})
	f := &fixture{t: t, c: c, ctx: t.Context()}
	for _, n := range []string{ns, "shop"} {
		if _, err := c.CreateNamespace(f.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	srv := f.account("flowserver", ClusterRules)
	f.server = testcluster.KubeconfigT(t, srv.Config)
	f.agent = f.account("flowagent", nil).Token
	f.intruder = f.account("intruder", nil).Token
	return f
}

func (f *fixture) account(name string, rules []rbacv1.PolicyRule) *testcluster.ServiceAccountAccess {
	f.t.Helper()
	sa, err := f.c.ServiceAccount(f.ctx, testcluster.ServiceAccountSpec{Namespace: ns, Name: name, ClusterRules: rules})
	if err != nil {
		f.t.Fatal(err)
	}
	return sa
}

// allowUnbound is the setting the tests that post with f.agent (a token bound to no pod) run with;
// TestClusterReportsCountOnlyForTheirNode runs without it.
var allowUnbound = map[string]string{"ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS": "true"}

// with returns env plus more.
func with(env map[string]string, more map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{env, more} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// boundToken returns a flowagent token bound to an agent pod on node, as the kubelet mounts it: the
// API server puts the node's name in the token (authentication.kubernetes.io/node-name).
func (f *fixture) boundToken(node string) string {
	f.t.Helper()
	tok, _ := f.podToken("flowagent-"+node, node)
	return tok
}

// agentToken is boundToken, and waits until svc's pod cache has the agent's pod, so its first report
// is not told to retry (pod_not_seen).
func (f *fixture) agentToken(svc *servicetest.Service, node string) string {
	f.t.Helper()
	before, _ := metricstest.Scrape(f.t, svc.URL+"/metrics").Value("zonetoll_flowserver_pods", nil)
	tok := f.boundToken(node)
	f.waitGauge(svc, "zonetoll_flowserver_pods", before+1)
	return tok
}

// podToken creates a flowagent pod of that name on node and returns a token bound to it.
func (f *fixture) podToken(name, node string) (string, *corev1.Pod) {
	f.t.Helper()
	pod, err := f.c.Client.CoreV1().Pods(ns).Create(f.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{ServiceAccountName: "flowagent", NodeName: node,
			Containers: []corev1.Container{{Name: "agent", Image: testcluster.PauseImage}}},
	}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	exp := int64(3600)
	tr, err := f.c.Client.CoreV1().ServiceAccounts(ns).CreateToken(f.ctx, "flowagent", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatalf("creating a token bound to %s: %v", pod.Name, err)
	}
	return tr.Status.Token, pod
}

// sourceNodes maps every pod and node address in the cluster to its node.
func (f *fixture) sourceNodes() map[report.Addr]string {
	f.t.Helper()
	out := map[report.Addr]string{}
	pods, err := f.c.Client.CoreV1().Pods("").List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, ip := range p.Status.PodIPs {
			if a, err := netip.ParseAddr(ip.IP); err == nil && !p.Spec.HostNetwork {
				out[report.AddrFrom(a)] = p.Spec.NodeName
			}
		}
	}
	nodes, err := f.c.Client.CoreV1().Nodes().List(f.ctx, metav1.ListOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	for _, n := range nodes.Items {
		for _, na := range n.Status.Addresses {
			if a, err := netip.ParseAddr(na.Address); err == nil {
				out[report.AddrFrom(a)] = n.Name
			}
		}
	}
	return out
}

// perNode splits flows into one report per node, each flow in the report of the node its source is on,
// as the agents send them (an agent reports only flows with a local source); flows whose source is on
// no node go to n-a's. The reports come in the order of their nodes' first flows.
func (f *fixture) perNode(seq uint64, start, end time.Time, flows []report.Flow) []*report.Report {
	f.t.Helper()
	nodes := f.sourceNodes()
	var out []*report.Report
	byNode := map[string]*report.Report{}
	for _, fl := range flows {
		n := nodes[fl.Src]
		if n == "" {
			n = "n-a"
		}
		r := byNode[n]
		if r == nil {
			r = newReport(n, seq, start, end)
			byNode[n] = r
			out = append(out, r)
		}
		r.Flows = append(r.Flows, fl)
	}
	return out
}

// start runs flowserver in-process under the restricted account and waits until it is ready.
func (f *fixture) start(env map[string]string) *servicetest.Service {
	f.t.Helper()
	// No last-scrape grace on stop: the tests scrape before they stop the server.
	full := map[string]string{"ZONETOLL_LOG_LEVEL": "debug", "ZONETOLL_NAMESPACE": ns, "ZONETOLL_SHUTDOWN_METRICS_GRACE": "0s"}
	for k, v := range env {
		full[k] = v
	}
	svc := servicetest.Start(f.t, Spec(), full, "--kubeconfig", f.server)
	servicetest.WaitFor(f.t, "flowserver ready (caches synced)", 0, servicetest.Ready(svc.URL))
	return svc
}

// waitFor is servicetest.WaitFor with the default deadline.
func (f *fixture) waitFor(what string, cond func() (bool, string)) {
	f.t.Helper()
	servicetest.WaitFor(f.t, what, 0, cond)
}

// waitGauge waits until a flowserver gauge has a value.
func (f *fixture) waitGauge(svc *servicetest.Service, name string, want float64) {
	f.t.Helper()
	f.waitGaugeAt(svc.URL, name, want)
}

// waitGaugeAt is waitGauge for the flowserver at base (http://host:port).
func (f *fixture) waitGaugeAt(base, name string, want float64) {
	f.t.Helper()
	f.waitFor(fmt.Sprintf("%s == %v", name, want), func() (bool, string) {
		v, _ := metricstest.Scrape(f.t, base+"/metrics").Value(name, nil)
		return v == want, fmt.Sprint(v)
	})
}

// expected is what the test itself says an address is: the independent side of every comparison.
type expected struct {
	ns, workload, kind, zone string
	pod                      string // for pods
}

func newReport(node string, seq uint64, start, end time.Time, flows ...report.Flow) *report.Report {
	r := &report.Report{Node: node, Sequence: seq, WindowStart: start, WindowEnd: end, Flows: flows}
	_, _ = rand.Read(r.BootID[:])
	return r
}

func flow(src, dst string, bytes, packets uint64) report.Flow {
	return report.Flow{
		Src: report.AddrFrom(netip.MustParseAddr(src)), Dst: report.AddrFrom(netip.MustParseAddr(dst)),
		Bytes: bytes, Packets: packets,
	}
}

func ctrl(kind, name string) []metav1.OwnerReference {
	yes := true
	api := "apps/v1"
	if kind == "Job" || kind == "CronJob" {
		api = "batch/v1"
	}
	return []metav1.OwnerReference{{APIVersion: api, Kind: kind, Name: name, UID: "00000000-0000-0000-0000-000000000001", Controller: &yes}}
}

// worldPods is the number of pods world creates, which a server watching the world has once its
// informers caught up (zonetoll_flowserver_pods).
const worldPods = 8

// startInWorld creates the world, starts the server with env and waits until it has the world's
// pods; it returns the server and what each address of the world is.
func (f *fixture) startInWorld(env map[string]string) (*servicetest.Service, map[string]expected) {
	f.t.Helper()
	addrs := f.world()
	svc := f.start(env)
	f.waitGauge(svc, "zonetoll_flowserver_pods", worldPods)
	return svc, addrs
}

// world creates nodes in three zones (and one without a zone), and pods of every workload kind
// (worldPods). It returns what each address is, written out by hand.
func (f *fixture) world() map[string]expected {
	t := f.t
	for _, n := range []testcluster.NodeSpec{
		{Name: "n-a", Zone: "zone-a", Region: "region-1", InternalIPs: []string{"198.18.1.1", "fd00:1::1"}},
		{Name: "n-b", Zone: "zone-b", Region: "region-1", InternalIPs: []string{"198.18.2.1"}},
		{Name: "n-c", Zone: "zone-c", Region: "region-1", InternalIPs: []string{"198.18.3.1"}},
		{Name: "n-x", InternalIPs: []string{"198.18.4.1"}}, // no zone label
	} {
		if _, err := f.c.CreateNode(f.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	// The frontend's ReplicaSet exists and names its Deployment; the api's does not (yet), so the
	// Deployment is known only from the pod-template-hash naming rule.
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "frontend-7d9f", OwnerReferences: ctrl("Deployment", "frontend")},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "frontend"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "frontend"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: testcluster.PauseImage}}},
			},
		},
	}
	if _, err := f.c.Client.AppsV1().ReplicaSets("shop").Create(f.ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "report-29000", OwnerReferences: ctrl("CronJob", "report")},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: testcluster.PauseImage}}},
		}},
	}
	if _, err := f.c.Client.BatchV1().Jobs("shop").Create(f.ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pods := []testcluster.PodSpec{
		{Namespace: "shop", Name: "frontend-7d9f-abcde", NodeName: "n-a", IPs: []string{"198.18.10.1", "fd00:10::1"},
			Labels: map[string]string{"pod-template-hash": "7d9f"}, OwnerReferences: ctrl("ReplicaSet", "frontend-7d9f")},
		{Namespace: "shop", Name: "api-5c6b-xyz12", NodeName: "n-b", IPs: []string{"198.18.10.2"},
			Labels: map[string]string{"pod-template-hash": "5c6b"}, OwnerReferences: ctrl("ReplicaSet", "api-5c6b")},
		{Namespace: "shop", Name: "db-0", NodeName: "n-c", IPs: []string{"198.18.10.3"}, OwnerReferences: ctrl("StatefulSet", "db")},
		{Namespace: "shop", Name: "logs-q8w2", NodeName: "n-a", IPs: []string{"198.18.10.4"}, OwnerReferences: ctrl("DaemonSet", "logs")},
		{Namespace: "shop", Name: "report-29000-k2j4", NodeName: "n-b", IPs: []string{"198.18.10.5"}, OwnerReferences: ctrl("Job", "report-29000")},
		{Namespace: "shop", Name: "debug", NodeName: "n-c", IPs: []string{"198.18.10.6"}},
		{Namespace: "shop", Name: "orphan", NodeName: "n-x", IPs: []string{"198.18.10.7"}},
		{Namespace: "kube-system", Name: "node-agent-n-b", NodeName: "n-b", HostNetwork: true, OwnerReferences: ctrl("DaemonSet", "node-agent")},
	}
	for _, p := range pods {
		if _, err := f.c.CreatePod(f.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	return map[string]expected{
		"198.18.10.1":  {"shop", "frontend", "deployment", "zone-a", "frontend-7d9f-abcde"},
		"fd00:10::1":   {"shop", "frontend", "deployment", "zone-a", "frontend-7d9f-abcde"},
		"198.18.10.2":  {"shop", "api", "deployment", "zone-b", "api-5c6b-xyz12"},
		"198.18.10.3":  {"shop", "db", "statefulset", "zone-c", "db-0"},
		"198.18.10.4":  {"shop", "logs", "daemonset", "zone-a", "logs-q8w2"},
		"198.18.10.5":  {"shop", "report", "cronjob", "zone-b", "report-29000-k2j4"},
		"198.18.10.6":  {"shop", "debug", "pod", "zone-c", "debug"},
		"198.18.10.7":  {"shop", "orphan", "pod", "", "orphan"},
		"198.18.1.1":   {"", "n-a", "node", "zone-a", ""},
		"fd00:1::1":    {"", "n-a", "node", "zone-a", ""},
		"198.18.2.1":   {"", "n-b", "node", "zone-b", ""}, // also the host-network pod's address
		"198.18.4.1":   {"", "n-x", "node", "", ""},
		"198.18.200.9": {"", "orders-db", "cidr:orders-db", "zone-c", ""},
		"fd00:200::7":  {"", "vpc-b", "subnet", "zone-b", ""},
		"198.19.77.7":  {"", "", "external", "", ""},
	}
}

const cidrFile = `cidrs:
- name: orders-db
  cidrs: [198.18.200.0/24]
  zone: zone-c
  region: region-1
- name: vpc-b
  kind: subnet
  cidrs: ["fd00:200::/64"]
  zone: zone-b
  region: region-1
`

func (f *fixture) cidrs() string {
	path := filepath.Join(f.t.TempDir(), "cidrs.yaml")
	if err := os.WriteFile(path, []byte(cidrFile), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return path
}

// traffic sums flows the way the metric contract says, from the test's own table.
type trafficWant struct {
	pairs map[string]float64 // label string of zonetoll_traffic_bytes_total → bytes
	pkts  map[string]float64
	zones map[[2]string]float64
	pods  map[[2]string]float64
}

func want(addrs map[string]expected, flows []report.Flow) trafficWant {
	w := trafficWant{pairs: map[string]float64{}, pkts: map[string]float64{}, zones: map[[2]string]float64{}, pods: map[[2]string]float64{}}
	for _, fl := range flows {
		s, d := addrs[fl.Src.String()], addrs[fl.Dst.String()]
		key := pairLabels(s, d)
		w.pairs[key] += float64(fl.Bytes)
		w.pkts[key] += float64(fl.Packets)
		w.zones[[2]string{s.zone, d.zone}] += float64(fl.Bytes)
		if s.pod != "" && s.zone != "" && d.zone != "" && s.zone != d.zone {
			w.pods[[2]string{s.ns, s.pod}] += float64(fl.Bytes)
		}
	}
	return w
}

func pairLabels(s, d expected) string {
	return fmt.Sprintf("src_namespace=%q,src_workload=%q,src_kind=%q,src_zone=%q,dst_namespace=%q,dst_workload=%q,dst_kind=%q,dst_zone=%q",
		s.ns, s.workload, s.kind, s.zone, d.ns, d.workload, d.kind, d.zone)
}

func seriesKey(labels map[string]string) string {
	return pairLabels(
		expected{labels["src_namespace"], labels["src_workload"], labels["src_kind"], labels["src_zone"], ""},
		expected{labels["dst_namespace"], labels["dst_workload"], labels["dst_kind"], labels["dst_zone"], ""})
}

// checkTraffic compares every traffic series on /metrics with the expectation, both ways.
func checkTraffic(t *testing.T, fams metricstest.Families, w trafficWant) {
	t.Helper()
	for name, wantSeries := range map[string]map[string]float64{"zonetoll_traffic_bytes_total": w.pairs, "zonetoll_traffic_packets_total": w.pkts} {
		got := map[string]float64{}
		for _, s := range series(fams, name) {
			got[seriesKey(s.Labels)] = s.Value
		}
		compare(t, name, got, wantSeries)
	}
	gotZones := map[string]float64{}
	for _, s := range series(fams, "zonetoll_zone_traffic_bytes_total") {
		gotZones[s.Labels["src_zone"]+"→"+s.Labels["dst_zone"]] = s.Value
	}
	wantZones := map[string]float64{}
	for k, v := range w.zones {
		wantZones[k[0]+"→"+k[1]] = v
	}
	compare(t, "zonetoll_zone_traffic_bytes_total", gotZones, wantZones)
	gotPods := map[string]float64{}
	for _, s := range series(fams, "pod_cross_zone_network_traffic_bytes_total") {
		gotPods[s.Labels["namespace"]+"/"+s.Labels["pod"]] = s.Value
	}
	wantPods := map[string]float64{}
	for k, v := range w.pods {
		wantPods[k[0]+"/"+k[1]] = v
	}
	compare(t, "pod_cross_zone_network_traffic_bytes_total", gotPods, wantPods)
}

type sample struct {
	Labels map[string]string
	Value  float64
}

// series returns every series of a family with its labels; absent labels read as "".
func series(fams metricstest.Families, name string) []sample {
	var out []sample
	for _, m := range fams.Series(name, nil) {
		s := sample{Labels: map[string]string{}}
		for _, lp := range m.GetLabel() {
			s.Labels[lp.GetName()] = lp.GetValue()
		}
		s.Value = fams.Sum(name, s.Labels)
		out = append(out, s)
	}
	return out
}

func compare(t *testing.T, name string, got, want map[string]float64) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s{%s} = %v, want %v", name, k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s} = %v, not expected at all", name, k, v)
		}
	}
}

func TestClusterIngestResolvesAndCountsEveryKind(t *testing.T) {
	f := newFixture(t)
	svc, addrs := f.startInWorld(with(allowUnbound, map[string]string{"ZONETOLL_CIDRS_FILE": f.cidrs(), "ZONETOLL_ZONE": "zone-a"}))
	f.waitGauge(svc, "zonetoll_flowserver_nodes", 4)

	now := time.Now()
	flows := []report.Flow{
		flow("198.18.10.1", "198.18.10.2", 150_000, 120),   // frontend → api, zone-a → zone-b
		flow("fd00:10::1", "198.18.10.2", 2_000, 2),        // frontend over IPv6 → api
		flow("198.18.10.2", "198.18.10.3", 90_000, 70),     // api → db, zone-b → zone-c
		flow("198.18.10.1", "198.18.10.4", 5_000, 5),       // frontend → logs, same zone
		flow("198.18.10.5", "198.18.200.9", 40_000, 30),    // cronjob → managed database CIDR
		flow("198.18.10.6", "fd00:200::7", 1_000, 1),       // bare pod → subnet CIDR
		flow("198.18.10.3", "198.19.77.7", 7_777, 9),       // db → external
		flow("198.18.2.1", "198.18.10.1", 3_300, 3),        // host-network pod on n-b → frontend
		flow("fd00:1::1", "198.18.10.6", 640, 1),           // node n-a over IPv6 → bare pod
		flow("198.18.10.7", "198.18.10.2", 12_345, 10),     // pod on a node without zone → api
		flow("198.18.4.1", "198.18.10.3", 99, 1),           // zoneless node → db
		flow("198.18.10.2", "198.18.10.1", 1_000_000, 700), // api → frontend
	}
	// Each source's node reports its flows: n-a, n-b, n-c and n-x; all but n-a's are from another
	// zone than the server's (n-x's from no zone).
	reports := f.perNode(1, now.Add(-10*time.Second), now, flows)
	if len(reports) != 4 {
		t.Fatalf("%d reports, want one per node of the world's 4", len(reports))
	}
	for _, r := range reports {
		if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r), "gzip"); got.Status != http.StatusOK || strings.TrimSpace(got.Body) != "applied" {
			t.Fatalf("report from %s: %d %q, want 200 applied", r.Node, got.Status, got.Body)
		}
	}
	r1 := reports[0]
	// The same report again, as an agent retries after a lost response: answered, not counted.
	if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r1), "gzip"); got.Status != http.StatusOK || strings.TrimSpace(got.Body) != "duplicate" {
		t.Fatalf("retried report: %d %q, want 200 duplicate", got.Status, got.Body)
	}
	// Uncompressed bodies are accepted as well.
	r3 := newReport("n-c", 7, now.Add(-5*time.Second), now, flow("198.18.10.3", "198.18.10.2", 4_242, 4))
	enc, err := report.Encode(r3)
	if err != nil {
		t.Fatal(err)
	}
	if got := reportpost.Post(t, svc.URL, f.agent, enc, ""); got.Status != http.StatusOK {
		t.Fatalf("uncompressed report: %d %q", got.Status, got.Body)
	}

	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	checkTraffic(t, fams, want(addrs, append(append([]report.Flow{}, flows...), r3.Flows...)))

	if v, _ := fams.Value("zonetoll_flowserver_reports_total", map[string]string{"result": "applied", "reason": ""}); v != 5 {
		t.Errorf("reports applied = %v, want 5", v)
	}
	if v, _ := fams.Value("zonetoll_flowserver_reports_total", map[string]string{"result": "duplicate", "reason": ""}); v != 1 {
		t.Errorf("reports answered as duplicates = %v, want 1", v)
	}
	if v, _ := fams.Value("zonetoll_flowserver_foreign_zone_reports_total", map[string]string{"node_zone": "zone-b"}); v != 1 {
		t.Errorf("foreign-zone reports from zone-b = %v, want 1", v)
	}
	if v, _ := fams.Value("zonetoll_flowserver_foreign_zone_reports_total", map[string]string{"node_zone": "zone-c"}); v != 2 {
		t.Errorf("foreign-zone reports from zone-c = %v, want 2", v)
	}
	if v, _ := fams.Value("zonetoll_flowserver_foreign_zone_reports_total", map[string]string{"node_zone": ""}); v != 1 {
		t.Errorf("foreign-zone reports from the node without zone = %v, want 1", v)
	}
	if v := fams.Sum("zonetoll_flowserver_foreign_source_bytes_total", nil); v != 0 {
		t.Errorf("foreign source bytes = %v, want 0 (every report from its sources' node)", v)
	}
	// Unresolved bytes by reason, counted per address.
	for reason, wantBytes := range map[string]float64{"external": 7_777, "no_zone_label": 12_345 + 99} {
		if v, _ := fams.Value("zonetoll_flowserver_unresolved_bytes_total", map[string]string{"reason": reason}); v != wantBytes {
			t.Errorf("unresolved bytes (%s) = %v, want %v", reason, v, wantBytes)
		}
	}
	if v, _ := fams.Value("zonetoll_zone_info", map[string]string{"zone": "zone-b", "region": "region-1"}); v != 1 {
		t.Errorf("zonetoll_zone_info{zone-b, region-1} = %v, want 1", v)
	}
	metricstest.Promtool(t, svc.URL+"/metrics")
}

func TestClusterRejectsWhatItMustAndKeepsWhatItAccepted(t *testing.T) {
	f := newFixture(t)
	svc, addrs := f.startInWorld(map[string]string{
		"ZONETOLL_INGEST_MAX_BODY_BYTES": "65536",
		"ZONETOLL_INGEST_MAX_FLOWS":      "100",
		// Slow enough that no token comes back during the test; the burst covers the good report
		// and the bad ones below that reach the limiter (those not refused for their token or size).
		"ZONETOLL_INGEST_NODE_RATE":  "0.01",
		"ZONETOLL_INGEST_NODE_BURST": "10",
	})
	agent := f.agentToken(svc, "n-a") // the agent of n-a, its token bound to its pod there
	now := time.Now()
	good := []report.Flow{flow("198.18.10.1", "198.18.10.2", 1_000, 1)}
	if got := reportpost.Post(t, svc.URL, agent, reportpost.Gzip(t, newReport("n-a", 1, now.Add(-time.Second), now, good...)), "gzip"); got.Status != http.StatusOK {
		t.Fatalf("good report: %d %s", got.Status, got.Body)
	}

	manyFlows := make([]report.Flow, 101)
	for i := range manyFlows {
		manyFlows[i] = flow("198.18.10.1", fmt.Sprintf("198.18.11.%d", i), 10, 1)
	}
	valid := reportpost.Gzip(t, newReport("n-a", 2, now.Add(-time.Second), now, good...))
	garbage := make([]byte, 70_000)
	_, _ = rand.Read(garbage)
	truncated, err := report.Encode(newReport("n-a", 3, now.Add(-time.Second), now, good...))
	if err != nil {
		t.Fatal(err)
	}
	truncated = truncated[:len(truncated)-5]
	// A gzip bomb: a small body that decompresses to more than the flow limit allows.
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	_, _ = zw.Write(make([]byte, 4<<20))
	_ = zw.Close()

	tests := []struct {
		name      string
		token     string
		body      []byte
		encoding  string
		method    string
		status    int
		mentions  string
		reasonTag string
	}{
		{"no token", "", valid, "gzip", "", http.StatusUnauthorized, "bearer token", "unauthenticated"},
		{"forged token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", valid, "gzip", "", http.StatusUnauthorized, "unauthenticated", "unauthenticated"},
		{"valid token of another account", f.intruder, valid, "gzip", "", http.StatusForbidden, "system:serviceaccount:zonetoll:intruder", "forbidden"},
		{"valid agent token bound to no pod", f.agent, valid, "gzip", "", http.StatusForbidden, "ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS", "unbound_token"},
		{"n-a's agent reporting as n-b", agent, reportpost.Gzip(t, newReport("n-b", 5, now.Add(-time.Second), now, flow("198.18.10.2", "198.18.10.1", 1, 1))), "gzip", "", http.StatusForbidden, `report names node "n-b" but the token is bound to a pod on node "n-a"`, "node_mismatch"},
		{"body over the byte limit", agent, garbage, "", "", http.StatusRequestEntityTooLarge, "65536", "body_too_large"},
		{"gzip bomb", agent, bomb.Bytes(), "gzip", "", http.StatusRequestEntityTooLarge, "too large", "body_too_large"},
		{"too many flows", agent, reportpost.Gzip(t, newReport("n-a", 4, now.Add(-time.Second), now, manyFlows...)), "gzip", "", http.StatusRequestEntityTooLarge, "101", "too_many_flows"},
		{"truncated report", agent, truncated, "", "", http.StatusBadRequest, "truncated", "malformed"},
		{"not gzip", agent, []byte("ZTRP but not gzip"), "gzip", "", http.StatusBadRequest, "gzip", "malformed"},
		{"unknown encoding", agent, valid, "br", "", http.StatusUnsupportedMediaType, "br", "unsupported_encoding"},
		{"GET", agent, nil, "", http.MethodGet, http.StatusMethodNotAllowed, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got reportpost.Response
			if tt.method == http.MethodGet {
				req, _ := http.NewRequest(http.MethodGet, svc.URL+"/v1/reports", nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				got.Status = resp.StatusCode
			} else {
				got = reportpost.Post(t, svc.URL, tt.token, tt.body, tt.encoding)
			}
			if got.Status != tt.status {
				t.Fatalf("status %d (%s), want %d", got.Status, strings.TrimSpace(got.Body), tt.status)
			}
			if !strings.Contains(got.Body, tt.mentions) {
				t.Errorf("error %q does not mention %q", strings.TrimSpace(got.Body), tt.mentions)
			}
			if tt.status == http.StatusUnauthorized && got.Header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}

	// Rate: a burst of 10, then one per 100 s. The good report and six bad ones took seven tokens.
	var limited reportpost.Response
	for seq := uint64(10); seq < 20; seq++ {
		got := reportpost.Post(t, svc.URL, agent, reportpost.Gzip(t, newReport("n-a", seq, now.Add(-time.Second), now, flow("198.18.10.4", "198.18.10.1", 1, 1))), "gzip")
		if got.Status == http.StatusTooManyRequests {
			limited = got
			break
		}
		if got.Status != http.StatusOK {
			t.Fatalf("report %d: %d %s", seq, got.Status, got.Body)
		}
	}
	if limited.Status != http.StatusTooManyRequests {
		t.Fatal("10 reports in a row from one node were never refused with 429")
	}
	if ra := limited.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("429 with Retry-After %q, want a positive number of seconds", ra)
	}
	// The limit is per agent, not per node named in the body: the same token naming another node is
	// held back too (before its body is read, so before the node is compared), and the agent of
	// another node (its token bound to its pod there) is not.
	fromC := []report.Flow{flow("198.18.10.3", "198.18.10.2", 1_000, 1)} // db on n-c → api
	if got := reportpost.Post(t, svc.URL, agent, reportpost.Gzip(t, newReport("n-c", 1, now.Add(-time.Second), now, fromC...)), "gzip"); got.Status != http.StatusTooManyRequests {
		t.Errorf("report of the limited agent naming another node: %d %s, want 429", got.Status, got.Body)
	}
	if got := reportpost.Post(t, svc.URL, f.agentToken(svc, "n-c"), reportpost.Gzip(t, newReport("n-c", 1, now.Add(-time.Second), now, fromC...)), "gzip"); got.Status != http.StatusOK {
		t.Errorf("report of another node's agent: %d %s", got.Status, got.Body)
	}

	// What was accepted before the bad requests is all there, and nothing of theirs was counted.
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	for _, w := range []struct {
		src, dst string
		want     float64
	}{
		{"frontend", "api", 1_000}, // the good report from n-a
		{"db", "api", 1_000},       // n-c's agent
		{"api", "frontend", 0},     // only in the refused report that named n-b
	} {
		if v := fams.Sum("zonetoll_traffic_bytes_total", map[string]string{"src_workload": w.src, "dst_workload": w.dst}); v != w.want {
			t.Errorf("%s → %s bytes = %v, want %v (only accepted reports)", w.src, w.dst, v, w.want)
		}
	}
	if v := fams.Sum("zonetoll_traffic_bytes_total", map[string]string{"src_workload": addrs["198.18.10.4"].workload, "dst_workload": addrs["198.18.10.1"].workload}); v < 1 {
		t.Errorf("logs → frontend bytes = %v, want the reports accepted before the limit", v)
	}
	for _, tt := range tests {
		if tt.reasonTag == "" {
			continue
		}
		if v := fams.Sum("zonetoll_flowserver_reports_total", map[string]string{"result": "rejected", "reason": tt.reasonTag}); v < 1 {
			t.Errorf("rejections with reason %s = %v, want at least 1", tt.reasonTag, v)
		}
	}
	if v := fams.Sum("zonetoll_flowserver_reports_total", map[string]string{"result": "rejected", "reason": "rate_limited"}); v != 2 {
		t.Errorf("rate-limited rejections = %v, want 2", v)
	}
	// The forged token was reviewed once; asking again is answered from the cache.
	reportpost.Post(t, svc.URL, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", valid, "gzip")
	fams = metricstest.Scrape(t, svc.URL+"/metrics")
	if v, _ := fams.Value("zonetoll_flowserver_token_reviews_total", map[string]string{"result": "unauthenticated"}); v != 1 {
		t.Errorf("TokenReviews of the forged token = %v, want 1 (the retry is a cache hit)", v)
	}
	if v, _ := fams.Value("zonetoll_flowserver_token_reviews_total", map[string]string{"result": "authenticated"}); v != 4 {
		t.Errorf("TokenReviews of valid tokens = %v, want 4 (n-a's agent, n-c's agent, the unbound agent token and intruder once each)", v)
	}
	metricstest.Promtool(t, svc.URL+"/metrics")
}

// A report that arrives after its pod is gone, or after the pod's IP went to another pod, is
// attributed by its window to the pod that had the address then.
func TestClusterLateReportsFollowPodLifetimes(t *testing.T) {
	f := newFixture(t)
	svc, _ := f.startInWorld(allowUnbound)
	const reused = "198.18.20.1"
	if _, err := f.c.CreatePod(f.ctx, testcluster.PodSpec{Namespace: "shop", Name: "old-holder", NodeName: "n-a", IPs: []string{reused}}); err != nil {
		t.Fatal(err)
	}
	f.waitGauge(svc, "zonetoll_flowserver_pods", worldPods+1)
	time.Sleep(3 * time.Second) // past the creation timestamp's second and the clock slack
	oldStart := time.Now()
	time.Sleep(time.Second)
	oldEnd := time.Now()
	if err := f.c.DeletePod(f.ctx, "shop", "old-holder"); err != nil {
		t.Fatal(err)
	}
	f.waitGauge(svc, "zonetoll_flowserver_gone_pod_addresses", 1)

	// Late: the pod is gone, the report is about its lifetime.
	late := newReport("n-a", 1, oldStart, oldEnd, flow(reused, "198.18.10.3", 5_000, 5))
	if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, late), "gzip"); got.Status != http.StatusOK {
		t.Fatalf("late report: %d %s", got.Status, got.Body)
	}
	time.Sleep(5 * time.Second) // the new holder is created well after the old one died
	if _, err := f.c.CreatePod(f.ctx, testcluster.PodSpec{Namespace: "shop", Name: "new-holder", NodeName: "n-b", IPs: []string{reused}}); err != nil {
		t.Fatal(err)
	}
	f.waitGauge(svc, "zonetoll_flowserver_pods", worldPods+1)
	time.Sleep(3 * time.Second)
	newStart := time.Now()
	time.Sleep(time.Second)
	newEnd := time.Now()
	// Later still: the IP belongs to new-holder now, but this report is about old-holder's time.
	later := newReport("n-a", 2, oldStart, oldEnd, flow(reused, "198.18.10.3", 700, 1))
	current := newReport("n-b", 1, newStart, newEnd, flow(reused, "198.18.10.3", 300, 1))
	for _, r := range []*report.Report{later, current} {
		if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r), "gzip"); got.Status != http.StatusOK {
			t.Fatalf("report: %d %s", got.Status, got.Body)
		}
	}
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	for pod, wantBytes := range map[string]float64{"old-holder": 5_700, "new-holder": 300} {
		if v, _ := fams.Value("pod_cross_zone_network_traffic_bytes_total", map[string]string{"namespace": "shop", "pod": pod}); v != wantBytes {
			t.Errorf("cross-zone bytes of %s = %v, want %v", pod, v, wantBytes)
		}
		if v := fams.Sum("zonetoll_traffic_bytes_total", map[string]string{"src_workload": pod, "src_kind": "pod", "dst_workload": "db"}); v != wantBytes {
			t.Errorf("%s → db bytes = %v, want %v", pod, v, wantBytes)
		}
	}
	if v, _ := fams.Value("zonetoll_flowserver_addresses_resolved_total", map[string]string{"source": "deleted_pod"}); v != 2 {
		t.Errorf("addresses resolved to deleted pods = %v, want 2", v)
	}
}

func TestClusterSeriesLimitSendsBytesToOverflow(t *testing.T) {
	f := newFixture(t)
	svc, addrs := f.startInWorld(with(allowUnbound, map[string]string{"ZONETOLL_MAX_SERIES": "2"}))
	now := time.Now()
	flows := []report.Flow{
		flow("198.18.10.1", "198.18.10.2", 100, 1), // frontend(a) → api(b)
		flow("198.18.10.2", "198.18.10.3", 200, 2), // api(b) → db(c)
		flow("198.18.10.3", "198.18.10.6", 400, 4), // db(c) → debug(c): over the limit
		flow("198.18.10.4", "198.18.10.2", 800, 8), // logs(a) → api(b): over the limit
	}
	// One flow per report, each from its source's node, so the first two series are taken in a known order.
	for i, fl := range flows {
		r := f.perNode(uint64(i+1), now.Add(-time.Second), now, []report.Flow{fl})[0]
		if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r), "gzip"); got.Status != http.StatusOK {
			t.Fatalf("report %d: %d %s", i, got.Status, got.Body)
		}
	}
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	got := map[string]float64{}
	for _, s := range series(fams, "zonetoll_traffic_bytes_total") {
		got[seriesKey(s.Labels)] = s.Value
	}
	ov := func(zone string) expected { return expected{"__overflow__", "__overflow__", "__overflow__", zone, ""} }
	compare(t, "zonetoll_traffic_bytes_total", got, map[string]float64{
		pairLabels(addrs["198.18.10.1"], addrs["198.18.10.2"]): 100,
		pairLabels(addrs["198.18.10.2"], addrs["198.18.10.3"]): 200,
		pairLabels(ov("zone-c"), ov("zone-c")):                 400,
		pairLabels(ov("zone-a"), ov("zone-b")):                 800,
	})
	if v, _ := fams.Value("zonetoll_flowserver_series_overflow_bytes_total", map[string]string{"metric": "zonetoll_traffic"}); v != 1_200 {
		t.Errorf("overflow bytes = %v, want 1200", v)
	}
	// The pod metric has its own limit: frontend, api and logs sent cross-zone, so one overflows.
	if v := fams.Sum("pod_cross_zone_network_traffic_bytes_total", nil); v != 100+200+800 {
		t.Errorf("sum of per-pod cross-zone bytes = %v, want 1100 (overflow included)", v)
	}
	if v, _ := fams.Value("pod_cross_zone_network_traffic_bytes_total", map[string]string{"namespace": "__overflow__", "pod": "__overflow__"}); v != 800 {
		t.Errorf("per-pod overflow series = %v, want 800", v)
	}
	metricstest.Promtool(t, svc.URL+"/metrics")
}

// After the API server restarts, the informers resume: pods created afterwards resolve.
func TestClusterResolvesAfterAPIServerRestart(t *testing.T) {
	f := newFixture(t)
	svc, _ := f.startInWorld(allowUnbound)
	if err := f.c.RestartAPIServer(f.ctx, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.CreatePod(f.ctx, testcluster.PodSpec{Namespace: "shop", Name: "after-restart", NodeName: "n-c", IPs: []string{"198.18.30.1"}}); err != nil {
		t.Fatal(err)
	}
	f.waitGauge(svc, "zonetoll_flowserver_pods", worldPods+1)
	// The Service and EndpointSlice informers resume too.
	f.createService(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "after"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}})
	f.createSlice(endpointSlice("shop", "after-1", "after", discoveryv1.AddressTypeIPv4, endpoint{addr: "198.18.30.1", zone: "zone-c"}))
	f.waitFor("the Service created after the restart", func() (bool, string) {
		v, _ := metricstest.Scrape(f.t, svc.URL+"/metrics").Value("zonetoll_service_ready_endpoints", map[string]string{"namespace": "shop", "service": "after", "zone": "zone-c"})
		return v == 1, fmt.Sprint(v)
	})
	time.Sleep(3 * time.Second)
	now := time.Now()
	// The agent's token is reviewed again after the restart (the cache may hold it; either way it works).
	for _, r := range f.perNode(1, now.Add(-time.Second), now, []report.Flow{flow("198.18.30.1", "198.18.10.1", 999, 1), flow("198.18.10.1", "198.18.30.1", 998, 1)}) {
		if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r), "gzip"); got.Status != http.StatusOK {
			t.Fatalf("report from %s after restart: %d %s", r.Node, got.Status, got.Body)
		}
	}
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	if v, _ := fams.Value("zonetoll_traffic_bytes_total", map[string]string{"src_workload": "after-restart", "src_zone": "zone-c", "dst_workload": "frontend", "dst_zone": "zone-a"}); v != 999 {
		t.Errorf("after-restart → frontend = %v, want 999", v)
	}
	if v, _ := fams.Value("zonetoll_service_traffic_bytes_total", map[string]string{"src_workload": "frontend", "service": "after", "dst_zone": "zone-c", "direction": "request"}); v != 998 {
		t.Errorf("frontend → Service after = %v, want 998", v)
	}
}

func TestClusterFlowLog(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "flows.jsonl")
	svc, _ := f.startInWorld(with(allowUnbound, map[string]string{"ZONETOLL_FLOW_LOG_OUTPUT": path, "ZONETOLL_FLOW_LOG_MIN_BYTES": "1000"}))
	start := time.Now().Add(-10 * time.Second).UTC().Truncate(time.Millisecond)
	end := start.Add(10 * time.Second)
	r := newReport("n-a", 1, start, end,
		flow("198.18.10.1", "198.18.10.2", 150_000, 120), // logged
		flow("198.18.10.1", "198.18.10.4", 999, 1),       // below the threshold
	)
	if got := reportpost.Post(t, svc.URL, f.agent, reportpost.Gzip(t, r), "gzip"); got.Status != http.StatusOK {
		t.Fatalf("report: %d %s", got.Status, got.Body)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 1 {
		t.Fatalf("flow log has %d lines, want 1:\n%s", len(lines), data)
	}
	var line struct {
		Time   time.Time `json:"time"`
		Msg    string    `json:"msg"`
		Window struct {
			Start, End time.Time
		} `json:"window"`
		Src, Dst struct {
			IP, Namespace, Pod, Workload, Kind, Node, Zone string
		}
		Bytes, Packets uint64
		CrossZone      bool `json:"cross_zone"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &line); err != nil {
		t.Fatalf("flow log line is not JSON: %v\n%s", err, lines[0])
	}
	if line.Msg != "flow" || !line.Window.Start.Equal(start) || !line.Window.End.Equal(end) ||
		line.Src.IP != "198.18.10.1" || line.Src.Pod != "frontend-7d9f-abcde" || line.Src.Workload != "frontend" ||
		line.Src.Kind != "deployment" || line.Src.Node != "n-a" || line.Src.Zone != "zone-a" ||
		line.Dst.IP != "198.18.10.2" || line.Dst.Workload != "api" || line.Dst.Zone != "zone-b" ||
		line.Bytes != 150_000 || line.Packets != 120 || !line.CrossZone {
		t.Errorf("flow log line = %+v\nfrom %s", line, lines[0])
	}
	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	for result, wantN := range map[string]float64{"written": 1, "below_threshold": 1} {
		if v, _ := fams.Value("zonetoll_flowserver_flow_log_lines_total", map[string]string{"result": result}); v != wantN {
			t.Errorf("flow log lines %s = %v, want %v", result, v, wantN)
		}
	}
}
