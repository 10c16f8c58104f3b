package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/reportpost"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// BenchmarkClusterMemory runs the flowserver binary (as make build builds it) against a test cluster
// with 10,000 pods on 100 nodes in 1,000 Deployments (their ReplicaSets cached), deletes and recreates
// pods to put addresses in the gone-pod LRU, fills the traffic metrics with reports, and reports the
// process's resident memory (peak and now) and Go heap. Run with -benchtime 1x; it takes minutes.
func BenchmarkClusterMemory(b *testing.B) {
	testcluster.Need(b)
	const pods, nodes, workloads, churn = 10_000, 100, 1_000, 5_000
	for b.Loop() {
		c := testcluster.StartT(b, testcluster.Options{})
		ctx := b.Context()
		for _, n := range []string{ns, "bench"} {
			if _, err := c.CreateNamespace(ctx, n); err != nil {
				b.Fatal(err)
			}
		}
		srv, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: ns, Name: "flowserver", ClusterRules: ClusterRules})
		if err != nil {
			b.Fatal(err)
		}
		agent, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: ns, Name: "flowagent"})
		if err != nil {
			b.Fatal(err)
		}
		for i := range nodes {
			if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: fmt.Sprintf("node-%03d", i), Zone: fmt.Sprintf("zone-%c", 'a'+i%3), Region: "r",
				InternalIPs: []string{fmt.Sprintf("198.19.%d.%d", 200+i/250, i%250+1)}}); err != nil {
				b.Fatal(err)
			}
		}
		for w := range workloads {
			rs := &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("app-%d-h", w), OwnerReferences: ctrl("Deployment", fmt.Sprintf("app-%d", w))},
				Spec: appsv1.ReplicaSetSpec{
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint(w)}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": fmt.Sprint(w)}},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: testcluster.PauseImage}}},
					},
				},
			}
			if _, err := c.Client.AppsV1().ReplicaSets("bench").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
		}
		specs := func(from, to int, gen string) []testcluster.PodSpec {
			var out []testcluster.PodSpec
			for p := from; p < to; p++ {
				w := p % workloads
				out = append(out, testcluster.PodSpec{Namespace: "bench", Name: fmt.Sprintf("app-%d-h-%s%05d", w, gen, p), NodeName: fmt.Sprintf("node-%03d", p%nodes),
					IPs: []string{fmt.Sprintf("198.18.%d.%d", p/250, p%250+1)}, Labels: map[string]string{"pod-template-hash": "h"},
					OwnerReferences: ctrl("ReplicaSet", fmt.Sprintf("app-%d-h", w))})
			}
			return out
		}
		if err := c.CreatePods(ctx, specs(0, pods, "a"), 8); err != nil {
			b.Fatal(err)
		}

		bin := servicebuild.BinaryT(b, "flowserver")
		port := freePort(b)
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		cmd := exec.Command(bin, "run", "--kubeconfig", testcluster.KubeconfigT(b, srv.Config))
		// The agent's token here is bound to no pod, and one client sends every node's reports.
		cmd.Env = append(os.Environ(), "ZONETOLL_HTTP_LISTEN_ADDRESS=127.0.0.1:"+fmt.Sprint(port), "ZONETOLL_LOG_LEVEL=warn", "ZONETOLL_NAMESPACE="+ns,
			"ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS=true", "ZONETOLL_INGEST_NODE_RATE=0")
		// ZONETOLL_BENCH_SERVER_ENV="K=V,K=V" passes extra variables to the server, to compare settings
		// such as GOMEMLIMIT.
		if extra := os.Getenv("ZONETOLL_BENCH_SERVER_ENV"); extra != "" {
			cmd.Env = append(cmd.Env, strings.Split(extra, ",")...)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
		waitMetric(b, url, "zonetoll_flowserver_pods", pods)

		// Churn: half the pods are replaced, so their addresses go to the gone-pod LRU.
		for p := range churn {
			w := p % workloads
			if err := c.DeletePod(ctx, "bench", fmt.Sprintf("app-%d-h-a%05d", w, p)); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.CreatePods(ctx, specs(0, churn, "b"), 8); err != nil {
			b.Fatal(err)
		}
		waitMetric(b, url, "zonetoll_flowserver_gone_pod_addresses", churn)
		waitMetric(b, url, "zonetoll_flowserver_pods", pods)

		// Traffic: every pod talks to pods of five other workloads; each node reports its pods' flows
		// (a flow whose source is on another node would not be counted).
		now := time.Now()
		for r := range 10 {
			flows := make([][]report.Flow, nodes)
			for i := range 20_000 {
				src := (r*20_000 + i) % pods
				dst := (src%workloads + 1 + (i/7)%5) % workloads
				flows[src%nodes] = append(flows[src%nodes], flow(fmt.Sprintf("198.18.%d.%d", src/250, src%250+1), fmt.Sprintf("198.18.%d.%d", dst/250, dst%250+1), 1000, 1))
			}
			for n, fl := range flows {
				rep := newReport(fmt.Sprintf("node-%03d", n), uint64(r+1), now.Add(-10*time.Second), now, fl...)
				if got := reportpost.Post(b, url, agent.Token, reportpost.Gzip(b, rep), "gzip"); got.Status != http.StatusOK {
					b.Fatalf("report %d of node-%03d: %d %s", r, n, got.Status, got.Body)
				}
			}
		}
		fams := metricstest.Scrape(b, url+"/metrics")
		peak, rss := procMemory(b, cmd.Process.Pid)
		heap, _ := fams.Value("go_memstats_heap_inuse_bytes", nil)
		series, _ := fams.Value("zonetoll_flowserver_series", map[string]string{"metric": "zonetoll_traffic"})
		b.ReportMetric(float64(peak)/(1<<20), "peak_RSS_MiB")
		b.ReportMetric(float64(rss)/(1<<20), "RSS_MiB")
		b.ReportMetric(heap/(1<<20), "heap_inuse_MiB")
		b.ReportMetric(series, "pair_series")
	}
}

func freePort(b *testing.B) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitMetric(b *testing.B, url, name string, want float64) {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	var last float64
	for ctx.Err() == nil {
		if fams, err := metricstest.ScrapeErr(url + "/metrics"); err == nil {
			if last, _ = fams.Value(name, nil); last == want {
				return
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.Fatalf("%s stayed at %v, want %v", name, last, want)
}

// procMemory returns a process's peak and current resident set, in bytes.
func procMemory(b testing.TB, pid int) (peak, now int64) {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	var v int64
	for _, line := range strings.Split(string(data), "\n") {
		if n, _ := fmt.Sscanf(line, "VmHWM: %d kB", &v); n == 1 {
			peak = v << 10
		}
		if n, _ := fmt.Sscanf(line, "VmRSS: %d kB", &v); n == 1 {
			now = v << 10
		}
	}
	if peak == 0 {
		b.Fatalf("/proc/%d/status has no VmHWM", pid)
	}
	return peak, now
}
