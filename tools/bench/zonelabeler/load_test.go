package zonelabeler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
	"github.com/zonetoll/zonetoll/tools/overlaycheck"
)

// load is what else happens while the labeler works, for the "identity under load" runs: the
// labeler's identity, pod watchers (per-zone Prometheus or vmagent servers, each with a service
// account that may list and watch pods) and pod status churn (kubelets reporting status).
type load struct {
	// serviceAccount runs the labeler with a token of a service account holding exactly the Role and
	// ClusterRole of kustomize/base/zonelabeler, as deployed; false runs it as the admin
	// (system:masters), which API priority and fairness exempts.
	serviceAccount bool
	// watchers is the number of extra pod watchers, each its own service account and connection.
	watchers int
	// churn is status patches per second, spread over the pods created so far, sent by the admin
	// while pods are created and until every pod is labelled.
	churn int
}

func (l load) String() string {
	id := "admin"
	if l.serviceAccount {
		id = "serviceaccount"
	}
	return fmt.Sprintf("identity=%s watchers=%d churn=%d/s", id, l.watchers, l.churn)
}

// labelerKubeconfig returns the kubeconfig the labeler runs with under l.
func (l load) labelerKubeconfig(ctx context.Context, b *testing.B, c *testcluster.Cluster) string {
	if !l.serviceAccount {
		return c.Kubeconfig
	}
	dir, err := filepath.Abs("../../../kustomize/base/zonelabeler")
	if err != nil {
		b.Fatal(err)
	}
	rules, clusterRules, err := overlaycheck.Rules(dir)
	if err != nil {
		b.Fatal(err)
	}
	sa, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{
		Namespace: leaseNamespace, Name: "zonelabeler", Rules: rules, ClusterRules: clusterRules,
	})
	if err != nil {
		b.Fatal(err)
	}
	return testcluster.KubeconfigT(b, sa.Config)
}

// startWatchers starts n pod informers on every namespace, each as its own service account with
// pods get/list/watch (what a per-zone scraper is granted), and waits for their sync. The returned
// counter is the number of pod events they received.
func startWatchers(ctx context.Context, b *testing.B, c *testcluster.Cluster, n int) *atomic.Int64 {
	var events atomic.Int64
	if n == 0 {
		return &events
	}
	const ns = "monitoring"
	if _, err := c.CreateNamespace(ctx, ns); err != nil {
		b.Fatal(err)
	}
	count := func(any) { events.Add(1) }
	for i := range n {
		sa, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{
			Namespace: ns, Name: fmt.Sprintf("scraper-%d", i),
			ClusterRules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
		})
		if err != nil {
			b.Fatal(err)
		}
		f := informers.NewSharedInformerFactory(sa.Client, 0)
		inf := f.Core().V1().Pods().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    count,
			UpdateFunc: func(_, obj any) { count(obj) },
			DeleteFunc: count,
		}); err != nil {
			b.Fatal(err)
		}
		f.Start(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			b.Fatalf("watcher %d did not sync", i)
		}
		b.Cleanup(f.Shutdown)
	}
	return &events
}

// churner patches the status of pods that exist, round robin, at a fixed rate.
type churner struct {
	patches, errors atomic.Int64
	stop            func()
}

// startChurn patches pod status at rate per second with the admin client, cycling over the pods
// whose create has returned; stop ends it and waits for its workers.
func startChurn(ctx context.Context, cs kubernetes.Interface, rec *recorder, rate int) *churner {
	ch := &churner{stop: func() {}}
	if rate <= 0 {
		return ch
	}
	ctx, cancel := context.WithCancel(ctx)
	work := make(chan string, rate)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for name := range work {
				n := ch.patches.Load() + ch.errors.Load()
				patch, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []map[string]any{{
					"type": "zonetoll.io/Churn", "status": "True", "message": fmt.Sprint(n),
					"lastTransitionTime": metav1.Now(),
				}}}})
				if _, err := cs.CoreV1().Pods(podNamespace).Patch(ctx, name, types.StrategicMergePatchType, patch,
					metav1.PatchOptions{FieldManager: "bench-churn"}, "status"); err != nil {
					if ctx.Err() == nil {
						ch.errors.Add(1)
					}
					continue
				}
				ch.patches.Add(1)
			}
		})
	}
	wg.Go(func() {
		defer close(work)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, sent, i := time.Now(), 0, 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := int(time.Since(start).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				name, ok := rec.createdPod(i)
				if !ok {
					continue
				}
				select {
				case work <- name:
				default: // the API server cannot keep the pace: drop, do not queue up
				}
				i++
			}
		}
	})
	ch.stop = func() { cancel(); wg.Wait() }
	return ch
}

// apiserverMetrics scrapes the API server's /metrics as the admin.
func apiserverMetrics(ctx context.Context, b *testing.B, cs kubernetes.Interface) metricstest.Samples {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		b.Fatalf("scraping kube-apiserver metrics: %v", err)
	}
	fams, err := metricstest.Parse(bytes.NewReader(raw))
	if err != nil {
		b.Fatal(err)
	}
	return fams.Samples()
}

// flowcontrolReport describes, from the difference of two API server scrapes, where requests went
// in API priority and fairness: per flow schema and priority level, the requests dispatched, their
// mean wait in the queue, and those rejected, with each level's seats (from the later scrape, after);
// plus the server's own pod PATCH latency.
func flowcontrolReport(delta, after metricstest.Samples) string {
	type key struct{ fs, pl string }
	rows := map[key]*struct{ dispatched, waitSum, waitCount, rejected float64 }{}
	row := func(s metricstest.Sample) *struct{ dispatched, waitSum, waitCount, rejected float64 } {
		k := key{s.Labels["flow_schema"], s.Labels["priority_level"]}
		if rows[k] == nil {
			rows[k] = &struct{ dispatched, waitSum, waitCount, rejected float64 }{}
		}
		return rows[k]
	}
	for _, s := range delta {
		switch s.Name {
		case "apiserver_flowcontrol_dispatched_requests_total":
			row(s).dispatched += s.Value
		case "apiserver_flowcontrol_request_wait_duration_seconds_sum":
			row(s).waitSum += s.Value
		case "apiserver_flowcontrol_request_wait_duration_seconds_count":
			row(s).waitCount += s.Value
		case "apiserver_flowcontrol_rejected_requests_total":
			row(s).rejected += s.Value
		}
	}
	keys := make([]key, 0, len(rows))
	for k, r := range rows {
		if r.dispatched+r.rejected > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return rows[keys[i]].dispatched > rows[keys[j]].dispatched })
	var sb strings.Builder
	sb.WriteString("  API priority and fairness (flow schema → priority level: dispatched, mean queue wait, rejected):\n")
	for _, k := range keys {
		r := rows[k]
		wait := 0.0
		if r.waitCount > 0 {
			wait = r.waitSum / r.waitCount
		}
		seats := after.Sum("apiserver_flowcontrol_nominal_limit_seats", map[string]string{"priority_level": k.pl})
		fmt.Fprintf(&sb, "    %s → %s (%.0f seats): %.0f, %.1f ms, %.0f\n", k.fs, k.pl, seats, r.dispatched, wait*1000, r.rejected)
	}
	// Watches the server ended (a consumer too slow for its buffer) make informers watch again, or
	// list everything again when their resource version is gone: the requests on pods show both.
	sb.WriteString("  requests on pods (all clients):")
	for _, verb := range []string{"LIST", "WATCH", "PATCH"} {
		fmt.Fprintf(&sb, " %s %.0f", verb, delta.Sum("apiserver_request_total", map[string]string{"verb": verb, "resource": "pods", "subresource": ""}))
	}
	fmt.Fprintf(&sb, "; watchers terminated by the server: %.0f\n", delta.Sum("apiserver_terminated_watchers_total", nil))
	const lat = "apiserver_request_duration_seconds"
	patch := map[string]string{"verb": "PATCH", "resource": "pods", "subresource": ""}
	if n := delta.Sum(lat+"_count", patch); n > 0 {
		fmt.Fprintf(&sb, "  pod label PATCH in the API server: %.0f, mean %.1f ms", n, delta.Sum(lat+"_sum", patch)/n*1000)
	}
	return sb.String()
}
