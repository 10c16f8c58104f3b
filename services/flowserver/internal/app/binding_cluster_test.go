package app

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/reportpost"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// A report counts only for its own node, against the real API server with the server's defaults:
// the agent's token is bound to its pod (TokenRequest with boundObjectRef, as the kubelet mints it) and
// the pod to its node; a report naming another node, a token bound to no pod, a token whose pod is
// gone, replaced or finished are refused, each under its reason; a flow whose source is a pod or the
// address of another node is counted apart while the rest of its report counts; a host-network pod's
// traffic from its own node counts. With ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS the unbound token is
// accepted.
func TestClusterReportsCountOnlyForTheirNode(t *testing.T) {
	f := newFixture(t)
	svc, addrs := f.startInWorld(nil)
	agentA := f.agentToken(svc, "n-a")
	agentB := f.agentToken(svc, "n-b")

	// What the API server says of a pod-bound token: its pod, and (Kubernetes 1.30+, feature
	// ServiceAccountTokenPodNodeInfo) its node.
	tr, err := f.c.Client.AuthenticationV1().TokenReviews().Create(f.ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: agentA}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	extra := tr.Status.User.Extra
	t.Logf("TokenReview of a pod-bound token on %s: user %s, extra %v", f.c.Version, tr.Status.User.Username, extra)
	for k, want := range map[string]string{
		"authentication.kubernetes.io/pod-name": "flowagent-n-a", "authentication.kubernetes.io/node-name": "n-a",
	} {
		if got := extra[k]; len(got) != 1 || got[0] != want {
			t.Errorf("TokenReview extra %s = %v, want [%s]", k, got, want)
		}
	}
	for _, k := range []string{"authentication.kubernetes.io/pod-uid", "authentication.kubernetes.io/node-uid"} {
		if len(extra[k]) != 1 {
			t.Errorf("TokenReview extra %s = %v, want one UID", k, extra[k])
		}
	}

	now := time.Now()
	seq := uint64(0)
	post := func(token, node string, flows ...report.Flow) reportpost.Response {
		seq++
		return reportpost.Post(t, svc.URL, token, reportpost.Gzip(t, newReport(node, seq, now.Add(-time.Second), now, flows...)), "gzip")
	}
	expect := func(what string, got reportpost.Response, status int, mentions string) {
		t.Helper()
		if got.Status != status || !strings.Contains(got.Body, mentions) {
			t.Errorf("%s: %d %q, want %d mentioning %q", what, got.Status, strings.TrimSpace(got.Body), status, mentions)
		}
	}

	// n-a's agent names n-b: refused, nothing of it counted.
	expect("n-a's token reporting as n-b", post(agentA, "n-b", flow("198.18.10.2", "198.18.10.1", 777, 1)), http.StatusForbidden, `token is bound to a pod on node "n-a"`)
	// A token of the agents' account bound to no pod (kubectl create token).
	expect("unbound token", post(f.agent, "n-a", flow("198.18.10.1", "198.18.10.2", 777, 1)), http.StatusForbidden, "not bound to a pod")

	// n-a's agent reports flows of its own node's sources, and some of other nodes'.
	got := post(agentA, "n-a",
		flow("198.18.10.1", "198.18.10.2", 1_000, 1), // frontend (n-a) → api: counted
		flow("198.18.1.1", "198.18.10.2", 70, 1),     // n-a's own address → api: counted
		flow("198.19.77.7", "198.18.10.1", 9, 1),     // external → frontend: on no node, counted
		flow("198.18.10.2", "198.18.10.1", 5_000, 5), // api, a pod on n-b: foreign
		flow("198.18.10.3", "198.18.10.1", 600, 1),   // db, a pod on n-c: foreign
		flow("198.18.2.1", "198.18.10.1", 300, 3),    // n-b's address (its host-network pod's too): foreign
	)
	expect("n-a's report with foreign sources", got, http.StatusOK, "applied")
	// n-b's host-network pod sends from n-b's address: n-b's agent reports it, and it counts.
	expect("n-b's host-network pod", post(agentB, "n-b", flow("198.18.2.1", "198.18.10.1", 3_300, 3)), http.StatusOK, "applied")

	fams := metricstest.Scrape(t, svc.URL+"/metrics")
	fe, api := addrs["198.18.10.1"], addrs["198.18.10.2"]
	for _, w := range []struct {
		src, dst expected
		want     float64
	}{
		{fe, api, 1_000},
		{addrs["198.18.1.1"], api, 70},
		{addrs["198.19.77.7"], fe, 9},
		{addrs["198.18.2.1"], fe, 3_300}, // n-b's own report only
		{api, fe, 0},
		{addrs["198.18.10.3"], fe, 0},
	} {
		l := map[string]string{"src_workload": w.src.workload, "src_kind": w.src.kind, "dst_workload": w.dst.workload, "dst_kind": w.dst.kind}
		if v := fams.Sum("zonetoll_traffic_bytes_total", l); v != w.want {
			t.Errorf("zonetoll_traffic_bytes_total%v = %v, want %v", l, v, w.want)
		}
	}
	if v := fams.Sum("zonetoll_traffic_bytes_total", nil); v != 1_000+70+9+3_300 {
		t.Errorf("all traffic bytes = %v, want %v", v, 1_000+70+9+3_300)
	}
	for reason, want := range map[string]float64{"pod": 5_600, "node": 300} {
		if v, _ := fams.Value("zonetoll_flowserver_foreign_source_bytes_total", map[string]string{"reason": reason}); v != want {
			t.Errorf("foreign source bytes (%s) = %v, want %v", reason, v, want)
		}
	}

	// n-b's agent pod fails: its (cached) token no longer reports.
	if _, err := f.c.Client.CoreV1().Pods(ns).Patch(f.ctx, "flowagent-n-b", types.MergePatchType,
		[]byte(`{"status":{"phase":"Failed"}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	f.waitFor("n-b's agent refused after its pod failed", func() (bool, string) {
		got := post(agentB, "n-b")
		return got.Status == http.StatusForbidden && strings.Contains(got.Body, "has finished"), fmt.Sprint(got.Status, " ", got.Body)
	})

	// n-a's agent pod is deleted. Its token is still in the server's token cache (1 m), but the pod is
	// not in the pod cache: retry (503), since it is also what a brand-new pod the informer has not
	// seen yet looks like. Once the token cache forgets it, TokenReview refuses it (401).
	before, _ := fams.Value("zonetoll_flowserver_pods", nil)
	if err := f.c.DeletePod(f.ctx, ns, "flowagent-n-a"); err != nil {
		t.Fatal(err)
	}
	f.waitGauge(svc, "zonetoll_flowserver_pods", before-1)
	got = post(agentA, "n-a", flow("198.18.10.1", "198.18.10.2", 1, 1))
	expect("token of a deleted pod, still cached", got, http.StatusServiceUnavailable, "pod cache does not have")
	if ra := got.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("pod_not_seen with Retry-After %q, want a positive number of seconds", ra)
	}

	// n-c's agent pod is replaced by another of the same name: the old pod's token is refused.
	tokC, podC := f.podToken("flowagent-n-c", "n-c")
	f.waitFor("n-c's agent accepted", func() (bool, string) {
		got := post(tokC, "n-c")
		return got.Status == http.StatusOK, fmt.Sprint(got.Status, " ", got.Body)
	})
	if err := f.c.DeletePod(f.ctx, ns, podC.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := f.c.Client.CoreV1().Pods(ns).Create(f.ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podC.Name},
		Spec:       corev1.PodSpec{ServiceAccountName: "flowagent", NodeName: "n-c", Containers: []corev1.Container{{Name: "agent", Image: testcluster.PauseImage}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.waitFor("the replaced pod's token refused", func() (bool, string) {
		got := post(tokC, "n-c")
		return got.Status == http.StatusForbidden && strings.Contains(got.Body, "was replaced"), fmt.Sprint(got.Status, " ", got.Body)
	})

	fams = metricstest.Scrape(t, svc.URL+"/metrics")
	for _, reason := range []string{"node_mismatch", "unbound_token", "pod_terminated", "pod_not_seen", "pod_mismatch"} {
		if v, _ := fams.Value("zonetoll_flowserver_reports_total", map[string]string{"result": "rejected", "reason": reason}); v < 1 {
			t.Errorf("rejections with reason %s = %v, want at least 1", reason, v)
		}
	}
	// Nothing the refused reports carried was counted.
	if v := fams.Sum("zonetoll_traffic_bytes_total", nil); v != 1_000+70+9+3_300 {
		t.Errorf("all traffic bytes = %v after the refusals, want %v", v, 1_000+70+9+3_300)
	}
	metricstest.Promtool(t, svc.URL+"/metrics")

	// The same unbound token, with the setting that allows it: accepted, for any node it names.
	open := f.start(allowUnbound)
	for _, node := range []string{"n-a", "n-b"} {
		src := map[string]string{"n-a": "198.18.10.1", "n-b": "198.18.10.2"}[node]
		got := reportpost.Post(t, open.URL, f.agent, reportpost.Gzip(t, newReport(node, 1, now.Add(-time.Second), now, flow(src, "198.18.10.3", 10, 1))), "gzip")
		if got.Status != http.StatusOK {
			t.Errorf("unbound token naming %s with ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS: %d %s", node, got.Status, got.Body)
		}
	}
}
