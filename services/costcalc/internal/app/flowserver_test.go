package app

import (
	"crypto/rand"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/promtest"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/reportpost"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// flowserverRules are the permissions docs/flowserver.md gives flowserver; the test runs it with only these.
var flowserverRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
	{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"list", "watch"}},
	{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
}

// serviceProc is a real service binary (flowserver, costcalc) run as a child process on a fixed
// loopback port so that it can be restarted where Prometheus and costcalc already look for it.
type serviceProc struct {
	t         *testing.T
	name      string // for messages
	bin, addr string
	args      []string // after "run"
	env       []string // ZONETOLL_* settings besides the listen address and the log format
	cmd       *exec.Cmd
	exited    chan struct{}
	log       *servicetest.SyncBuffer
}

func (f *serviceProc) start() {
	f.t.Helper()
	f.log = &servicetest.SyncBuffer{}
	f.cmd = exec.Command(f.bin, append([]string{"run"}, f.args...)...)
	f.cmd.Env = append(append(os.Environ(), "ZONETOLL_HTTP_LISTEN_ADDRESS="+f.addr, "ZONETOLL_LOG_FORMAT=text"), f.env...)
	f.cmd.Stdout, f.cmd.Stderr = f.log, f.log
	f.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := f.cmd.Start(); err != nil {
		f.t.Fatalf("starting %s: %v", f.name, err)
	}
	f.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(f.cmd, f.exited)
	ready := servicetest.Ready("http://" + f.addr)
	servicetest.WaitFor(f.t, f.name+" ready", 90*time.Second, func() (bool, string) {
		select {
		case <-f.exited:
			f.t.Fatalf("%s exited at start:\n%s", f.name, f.log.String())
		default:
		}
		return ready()
	})
}

// stop ends the process by its PID (SIGTERM, then SIGKILL) and waits for it.
func (f *serviceProc) stop() {
	if f.cmd == nil {
		return
	}
	select {
	case <-f.exited:
	default:
		f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(30 * time.Second):
			f.cmd.Process.Kill()
			<-f.exited
		}
	}
	f.cmd = nil
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func owner(kind, name string) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: name, UID: "00000000-0000-0000-0000-000000000001", Controller: &yes}}
}

func flow(src, dst string, bytes uint64) report.Flow {
	return report.Flow{Src: report.AddrFrom(netip.MustParseAddr(src)), Dst: report.AddrFrom(netip.MustParseAddr(dst)), Bytes: bytes, Packets: bytes / 1500}
}

// sendReport posts one report the way flowagent does: gzip, the agent's service-account token.
func sendReport(t *testing.T, addr, token, node string, seq uint64, flows ...report.Flow) {
	t.Helper()
	now := time.Now()
	r := &report.Report{Node: node, Sequence: seq, WindowStart: now.Add(-10 * time.Second), WindowEnd: now, Flows: flows}
	_, _ = rand.Read(r.BootID[:])
	reportpost.Send(t, "http://"+addr, token, r)
}

// TestDollarsFromRealFlowserver is the integration test: a real flowserver (built from this tree,
// run against a real kube-apiserver with nodes in three zones and a fourth in another region) is fed
// real reports, restarted, and fed again; Debian's Prometheus scrapes it; `costcalc run` scrapes it
// too. `costcalc report` over the range must equal the dollars this test computes by hand from the flows
// it sent and the AWS list prices, and the run's cost counters, derived from the flowserver's counters,
// the dollars of the bytes the flowserver holds: after its restart, those of its new life (and, for the
// pairs it has not seen again, those of its first life, kept until ZONETOLL_SERIES_TTL).
func TestDollarsFromRealFlowserver(t *testing.T) {
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	for _, n := range []string{"zonetoll", "shop"} {
		if _, err := c.CreateNamespace(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	srvAccount, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "zonetoll", Name: "flowserver", ClusterRules: flowserverRules})
	if err != nil {
		t.Fatal(err)
	}
	agent, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "zonetoll", Name: "flowagent"})
	if err != nil {
		t.Fatal(err)
	}
	// Zone names follow no cloud's convention: only zonetoll_zone_info can tell costcalc that zone-a,
	// zone-b and zone-c share region-1 while zone-w is in region-2.
	for _, n := range []testcluster.NodeSpec{
		{Name: "n-a", Zone: "zone-a", Region: "region-1", InternalIPs: []string{"198.18.1.1"}},
		{Name: "n-b", Zone: "zone-b", Region: "region-1", InternalIPs: []string{"198.18.2.1"}},
		{Name: "n-c", Zone: "zone-c", Region: "region-1", InternalIPs: []string{"198.18.3.1"}},
		{Name: "n-w", Zone: "zone-w", Region: "region-2", InternalIPs: []string{"198.18.5.1"}},
		{Name: "n-x", InternalIPs: []string{"198.18.4.1"}}, // no zone label
	} {
		if _, err := c.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []testcluster.PodSpec{
		{Namespace: "shop", Name: "web-0", NodeName: "n-a", IPs: []string{"198.18.10.1"}, OwnerReferences: owner("StatefulSet", "web")},
		{Namespace: "shop", Name: "web-1", NodeName: "n-a", IPs: []string{"198.18.10.2"}, OwnerReferences: owner("StatefulSet", "web")},
		{Namespace: "shop", Name: "db-0", NodeName: "n-b", IPs: []string{"198.18.10.3"}, OwnerReferences: owner("StatefulSet", "db")},
		{Namespace: "shop", Name: "cache-0", NodeName: "n-c", IPs: []string{"198.18.10.4"}, OwnerReferences: owner("StatefulSet", "cache")},
		{Namespace: "shop", Name: "backup-0", NodeName: "n-w", IPs: []string{"198.18.10.5"}, OwnerReferences: owner("StatefulSet", "backup")},
		{Namespace: "shop", Name: "orphan", NodeName: "n-x", IPs: []string{"198.18.10.6"}},
	} {
		if _, err := c.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	const (
		web, web1, db, cache, backup, orphan = "198.18.10.1", "198.18.10.2", "198.18.10.3", "198.18.10.4", "198.18.10.5", "198.18.10.6"
		internet                             = "198.19.77.7" // no pod, node or configured CIDR: external
	)

	fs := &serviceProc{t: t, name: "flowserver", bin: servicebuild.BinaryT(t, "flowserver"), addr: freeAddr(t),
		args: []string{"--kubeconfig", testcluster.KubeconfigT(t, srvAccount.Config)}, env: []string{"ZONETOLL_NAMESPACE=zonetoll",
			// The test posts with a token of the flowagent account bound to no pod (it runs no agent pods).
			"ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS=true", "ZONETOLL_SERIES_TTL=0", "ZONETOLL_SHUTDOWN_METRICS_GRACE=0s"}}
	t.Cleanup(fs.stop)
	fs.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("flowserver log:\n%s", fs.log.String())
		}
	})

	prom := promtest.Start(t, time.Second, fs.addr)
	promValue := prom.Value
	servicetest.WaitFor(t, "Prometheus scraping flowserver", 90*time.Second, func() (bool, string) {
		v, ok := promValue(`up{job="flowserver"}`)
		return ok && v == 1, fmt.Sprint(v)
	})

	cc := servicetest.Start(t, Spec(), map[string]string{
		"ZONETOLL_TARGETS":         "http://" + fs.addr + "/metrics",
		"ZONETOLL_SCRAPE_INTERVAL": "500ms",
		"ZONETOLL_SCRAPE_TIMEOUT":  "500ms",
		"ZONETOLL_PRICES_CLOUD":    "aws",
	})
	waitReady(t, cc.URL)
	start := time.Now()

	const g = 1 << 30
	// First life of the flowserver.
	sendReport(t, fs.addr, agent.Token, "n-a", 1,
		flow(web, db, 3*g),       // zone-a → zone-b, region-1
		flow(web, cache, 1*g),    // zone-a → zone-c
		flow(web, web1, 5*g),     // same zone
		flow(web, internet, 4*g), // internet egress
	)
	sendReport(t, fs.addr, agent.Token, "n-b", 1,
		flow(db, backup, 2*g), // region-1 → region-2
	)
	// A flow counts only in its source node's report (the flowserver counts other sources apart).
	sendReport(t, fs.addr, agent.Token, "n-x", 1,
		flow(orphan, web, 1*g), // the sender's node has no zone: not priced
	)
	promTotal := func() float64 { v, _ := promValue(`sum(zonetoll_traffic_bytes_total)`); return v }
	ccCost := func() float64 {
		return metricstest.Scrape(t, cc.URL+"/metrics").Sum("zonetoll_cross_zone_cost_dollars_total", nil)
	}
	// Before the restart: $0.06 + $0.02 + $0.36 + $0.04 (see below).
	servicetest.WaitFor(t, "Prometheus and costcalc seeing the first reports", 90*time.Second, func() (bool, string) {
		p, c := promTotal(), ccCost()
		return p == 16*g && math.Abs(c-0.48) < 1e-9, fmt.Sprintf("prometheus %v GiB, costcalc $%v", p/g, c)
	})

	// The flowserver restarts: its counters start again from zero.
	fs.stop()
	servicetest.WaitFor(t, "Prometheus seeing the flowserver down", 90*time.Second, func() (bool, string) {
		v, ok := promValue(`up{job="flowserver"}`)
		return ok && v == 0, fmt.Sprint(v)
	})
	fs.start()
	sendReport(t, fs.addr, agent.Token, "n-a", 1,
		flow(web, db, 1*g),
		flow(web, internet, 1*g),
	)
	// costcalc: $0.02 + $0.09 of the new life, $0.02 + $0.04 of the pairs only the first life had.
	servicetest.WaitFor(t, "Prometheus and costcalc seeing the report after the restart", 90*time.Second, func() (bool, string) {
		p, _ := promValue(`sum(zonetoll_traffic_bytes_total)`)
		c := ccCost()
		return p == 2*g && math.Abs(c-0.17) < 1e-9, fmt.Sprintf("prometheus %v GiB, costcalc $%v", p/g, c)
	})
	time.Sleep(1500 * time.Millisecond) // one more scrape, so the range's last sample is the final value
	end := time.Now()

	// The independent computation, by hand from the flows above and the AWS list prices ($0.01/GiB out
	// + $0.01/GiB in between zones, $0.02/GiB out between regions, $0.09/GiB out to the internet):
	want := map[string]float64{
		"web→db":       (3 + 1) * 0.02, // $0.08
		"web→cache":    1 * 0.02,       // $0.02
		"web→internet": (4 + 1) * 0.09, // $0.45
		"db→backup":    2 * 0.02,       // $0.04
	}
	const wantTotal = 0.59
	key := func(src, dst, dstKind string) string {
		if dstKind == "external" {
			return src + "→internet"
		}
		return src + "→" + dst
	}

	// costcalc run's counters: price × the flowserver's bytes, of its second life where it has them.
	runWant := map[string]float64{
		"web→db":       1 * 0.02,
		"web→cache":    1 * 0.02, // first life only
		"web→internet": 1 * 0.09,
		"db→backup":    2 * 0.02, // first life only
	}
	fams := metricstest.Scrape(t, cc.URL+"/metrics")
	got := map[string]float64{}
	for _, m := range fams.Series("zonetoll_cross_zone_cost_dollars_total", nil) {
		l := map[string]string{}
		for _, lp := range m.GetLabel() {
			l[lp.GetName()] = lp.GetValue()
		}
		got[key(l["src_workload"], l["dst_workload"], l["dst_kind"])] += m.GetCounter().GetValue()
	}
	for k, w := range runWant {
		if math.Abs(got[k]-w) > 1e-9 {
			t.Errorf("costcalc run: %s cost $%v, want $%v", k, got[k], w)
		}
	}
	if len(got) != len(runWant) {
		t.Errorf("costcalc run has cost series %v, want exactly %v", got, runWant)
	}
	if v, _ := fams.Value("zonetoll_costcalc_unpriced_bytes_total", map[string]string{"reason": "src_zone_unknown"}); v != 1*g {
		t.Errorf("costcalc run: unpriced bytes %v, want the orphan's 1 GiB", v)
	}
	if v, _ := fams.Value("zonetoll_costcalc_counter_resets_total", map[string]string{"kind": "restart"}); v != 1 {
		t.Errorf("costcalc run: %v restarts seen, want 1", v)
	}

	// costcalc report over the range, from Prometheus.
	var r struct {
		Total float64 `json:"total_dollars"`
		Pairs []struct {
			Src, Dst struct{ Workload, Kind string }
			Dollars  float64
		} `json:"top_pairs"`
		Unpriced []struct{ Bytes float64 } `json:"unpriced"`
	}
	costcalcJSON(t, &r, "report", "--prometheus", prom.URL, "--cloud", "aws",
		"--start", start.UTC().Format(time.RFC3339Nano), "--end", end.UTC().Format(time.RFC3339Nano))
	if math.Abs(r.Total-wantTotal) > 1e-9 {
		t.Errorf("costcalc report: total $%v, want $%v", r.Total, wantTotal)
	}
	reported := map[string]float64{}
	for _, p := range r.Pairs {
		reported[key(p.Src.Workload, p.Dst.Workload, p.Dst.Kind)] += p.Dollars
	}
	for k, w := range want {
		if math.Abs(reported[k]-w) > 1e-9 {
			t.Errorf("costcalc report: %s cost $%v, want $%v", k, reported[k], w)
		}
	}
	if len(r.Unpriced) != 1 || r.Unpriced[0].Bytes != 1*g {
		t.Errorf("costcalc report: unpriced %+v, want the orphan's 1 GiB", r.Unpriced)
	}
	if len(r.Pairs) > 0 && !strings.HasPrefix(key(r.Pairs[0].Src.Workload, r.Pairs[0].Dst.Workload, r.Pairs[0].Dst.Kind), "web→internet") {
		t.Errorf("costcalc report: the top pair is %+v, want web→internet ($0.45)", r.Pairs[0])
	}
}
