package app

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/markstore"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/freeport"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/reportpost"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// marksConfigMap is the zone-a server's ConfigMap, as the manifests name it (flowserver-dedupe-{zone}).
const marksConfigMap = "flowserver-dedupe-zone-a"

// MarksRules are the namespaced permissions the manifests grant for the dedupe marks: get and update
// of the zone's ConfigMap alone (kustomize/base/flowserver/zone/dedupe.yaml).
var MarksRules = []rbacv1.PolicyRule{
	{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{marksConfigMap}, Verbs: []string{"get", "update"}},
}

// marksFixture is a cluster with two nodes in two zones, a pod on each, the agent of node n-a with a
// pod-bound token, the shipped (empty) marks ConfigMap, and a flowserver account with exactly
// ClusterRules and MarksRules.
type marksFixture struct {
	*fixture
	token  string // flowagent's, bound to its pod on n-a
	server string // kubeconfig of the flowserver account
}

func newMarksFixture(t *testing.T) *marksFixture {
	f := newFixture(t)
	for _, n := range []testcluster.NodeSpec{
		{Name: "n-a", Zone: "zone-a", Region: "region-1", InternalIPs: []string{"198.18.1.1"}},
		{Name: "n-b", Zone: "zone-b", Region: "region-1", InternalIPs: []string{"198.18.2.1"}},
	} {
		if _, err := f.c.CreateNode(f.ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []testcluster.PodSpec{
		{Namespace: "shop", Name: "web", NodeName: "n-a", IPs: []string{"198.18.10.1"}},
		{Namespace: "shop", Name: "db", NodeName: "n-b", IPs: []string{"198.18.10.2"}},
	} {
		if _, err := f.c.CreatePod(f.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.c.Client.CoreV1().ConfigMaps(ns).Create(f.ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: marksConfigMap},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa, err := f.c.ServiceAccount(f.ctx, testcluster.ServiceAccountSpec{Namespace: ns, Name: "flowserver-marks", ClusterRules: ClusterRules, Rules: MarksRules})
	if err != nil {
		t.Fatal(err)
	}
	return &marksFixture{fixture: f, token: f.boundToken("n-a"), server: testcluster.KubeconfigT(t, sa.Config)}
}

// env is the flowserver's environment for zone-a with the marks kept in the ConfigMap.
func (m *marksFixture) env(saveInterval, grace string) map[string]string {
	return map[string]string{
		"ZONETOLL_NAMESPACE": ns, "ZONETOLL_ZONE": "zone-a",
		"ZONETOLL_DEDUPE_CONFIG_MAP":      "flowserver-dedupe-{zone}",
		"ZONETOLL_DEDUPE_SAVE_INTERVAL":   saveInterval,
		"ZONETOLL_SHUTDOWN_METRICS_GRACE": grace,
		"ZONETOLL_LOG_FORMAT":             "text",
	}
}

// agentReport is report seq of node n-a's agent (one boot): 1000×seq bytes from web to db.
func agentReport(boot [16]byte, seq uint64) *report.Report {
	end := time.Now().Add(-time.Second)
	return &report.Report{Node: "n-a", BootID: boot, Sequence: seq, WindowStart: end.Add(-10 * time.Second), WindowEnd: end,
		Flows: []report.Flow{flow("198.18.10.1", "198.18.10.2", 1000*seq, seq)}}
}

// post sends r and returns the answer's body ("applied", "duplicate"), failing t on anything but 200.
func post(t *testing.T, url, token string, r *report.Report) string {
	t.Helper()
	resp := reportpost.Post(t, url, token, reportpost.Gzip(t, r), "gzip")
	if resp.Status != http.StatusOK {
		t.Fatalf("report %d: %d %s", r.Sequence, resp.Status, resp.Body)
	}
	return strings.TrimSpace(resp.Body)
}

// counted is what a flowserver's /metrics says it counted: reports applied and duplicates, and the
// bytes from web to db.
func counted(t *testing.T, url string) (applied, duplicate, bytes float64) {
	t.Helper()
	fams := metricstest.Scrape(t, url+"/metrics")
	applied, _ = fams.Value("zonetoll_flowserver_reports_total", map[string]string{"result": "applied", "reason": ""})
	duplicate, _ = fams.Value("zonetoll_flowserver_reports_total", map[string]string{"result": "duplicate", "reason": ""})
	bytes = fams.Sum("zonetoll_traffic_bytes_total", map[string]string{"src_workload": "web", "dst_workload": "db"})
	return applied, duplicate, bytes
}

// TestClusterMarksSurviveRestart: the first flowserver applies a report and its answer is lost; the
// agent sends it again, and it reaches the next flowserver after a graceful restart. It is counted
// once: the first process saved its marks to the ConfigMap on shutdown, the second loaded them before
// it took reports. Without the ConfigMap (the marks per process, as before), the second counts it
// again.
func TestClusterMarksSurviveRestart(t *testing.T) {
	m := newMarksFixture(t)
	var boot [16]byte
	boot[0] = 0xa1
	first := servicetest.Start(t, Spec(), m.env("1h", "0s"), "--kubeconfig", m.server)
	servicetest.WaitFor(t, "first flowserver ready", 0, servicetest.Ready(first.URL))
	if got := post(t, first.URL, m.token, agentReport(boot, 1)); got != "applied" {
		t.Fatalf("first server: report 1 %s, want applied", got)
	}
	a1, d1, b1 := counted(t, first.URL)
	if code, out := first.Stop(); code != 0 {
		t.Fatalf("first server exited %d:\n%s", code, out)
	}

	second := servicetest.Start(t, Spec(), m.env("1h", "0s"), "--kubeconfig", m.server)
	servicetest.WaitFor(t, "second flowserver ready (marks loaded)", 0, servicetest.Ready(second.URL))
	if got := post(t, second.URL, m.token, agentReport(boot, 1)); got != "duplicate" {
		t.Errorf("second server: the retried report 1 was %s, want duplicate", got)
	}
	if got := post(t, second.URL, m.token, agentReport(boot, 2)); got != "applied" {
		t.Errorf("second server: report 2 was %s, want applied", got)
	}
	a2, d2, b2 := counted(t, second.URL)
	if a1+a2 != 2 || d1+d2 != 1 {
		t.Errorf("applied %v+%v, duplicates %v+%v; want 2 applied (1 and 2) and 1 duplicate", a1, a2, d1, d2)
	}
	if b1+b2 != 3000 {
		t.Errorf("web→db bytes over both servers = %v+%v, want 3000 (report 1 once, report 2)", b1, b2)
	}
}

// proc is a flowserver binary running as a process of its own, for signals.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	out  *servicetest.SyncBuffer
	done chan struct{}
	err  error // Wait's, once done is closed
}

func (m *marksFixture) startProc(bin string, env map[string]string) *proc {
	t := m.t
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, url: "http://" + addr, out: &servicetest.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "--kubeconfig", m.server)
	p.cmd.Env = append(os.Environ(), "ZONETOLL_HTTP_LISTEN_ADDRESS="+addr)
	for k, v := range env {
		p.cmd.Env = append(p.cmd.Env, k+"="+v)
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); <-p.done })
	servicetest.WaitFor(t, "flowserver process ready", 0, func() (bool, string) {
		select {
		case <-p.done:
			t.Fatalf("flowserver exited before it was ready: %v\n%s", p.err, p.out.String())
		default:
		}
		return servicetest.Ready(p.url)()
	})
	return p
}

// exit waits (bounded) for the process to end and returns its exit code, -1 for a signal.
func (p *proc) exit() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		p.t.Fatalf("flowserver did not exit within 2 minutes:\n%s", p.out.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// storedMark is the sequence the ConfigMap holds for boot of node n-a, 0 if none.
func (m *marksFixture) storedMark(boot [16]byte) uint64 {
	m.t.Helper()
	cm, err := m.c.Client.CoreV1().ConfigMaps(ns).Get(m.ctx, marksConfigMap, metav1.GetOptions{})
	if err != nil {
		m.t.Fatal(err)
	}
	marks, err := markstore.New(m.c.Client.CoreV1().RESTClient(), ns, marksConfigMap).Load(m.ctx)
	if err != nil {
		m.t.Fatalf("decoding %s: %v (%v)", marksConfigMap, err, cm.Data)
	}
	for _, mk := range marks {
		if mk.Node == "n-a" && mk.BootID == boot {
			return mk.Sequence
		}
	}
	return 0
}

// TestClusterCrashDoublesAtMostTheUnsavedReport shows what docs/flowserver.md bounds: after a crash
// (SIGKILL), only a report applied after the last write of the marks whose answer was lost is
// counted again, at most one per agent (an agent sends the next report only after this one's 2xx);
// a report applied before the last write is still a duplicate.
func TestClusterCrashDoublesAtMostTheUnsavedReport(t *testing.T) {
	m := newMarksFixture(t)
	bin := servicebuild.BinaryT(t, "flowserver")
	var boot [16]byte
	boot[0] = 0xb2

	// 1: applied, then a graceful stop writes it.
	p1 := m.startProc(bin, m.env("1h", "0s"))
	if got := post(t, p1.url, m.token, agentReport(boot, 1)); got != "applied" {
		t.Fatalf("report 1: %s", got)
	}
	p1.signal(syscall.SIGTERM)
	if code := p1.exit(); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, p1.out.String())
	}
	// 2: applied, its answer "lost", and the process killed before any write (interval 1h).
	p2 := m.startProc(bin, m.env("1h", "0s"))
	if got := post(t, p2.url, m.token, agentReport(boot, 2)); got != "applied" {
		t.Fatalf("report 2: %s", got)
	}
	p2.signal(syscall.SIGKILL)
	p2.exit()
	if got := m.storedMark(boot); got != 1 {
		t.Fatalf("stored mark after the crash = %d, want 1 (written at the graceful stop only)", got)
	}
	// The next process: 1 is a duplicate, 2 (applied after the last write) counts again: the bound.
	// 3 is applied and written by the periodic save before the next crash.
	p3 := m.startProc(bin, m.env("100ms", "0s"))
	if got := post(t, p3.url, m.token, agentReport(boot, 1)); got != "duplicate" {
		t.Errorf("report 1 after the crash: %s, want duplicate (saved before)", got)
	}
	if got := post(t, p3.url, m.token, agentReport(boot, 2)); got != "applied" {
		t.Errorf("report 2 after the crash: %s, want applied again (the documented bound: applied after the last write, answer lost)", got)
	}
	if got := post(t, p3.url, m.token, agentReport(boot, 3)); got != "applied" {
		t.Errorf("report 3: %s, want applied", got)
	}
	m.waitFor("the periodic save writes mark 3", func() (bool, string) {
		got := m.storedMark(boot)
		return got == 3, fmt.Sprint(got)
	})
	p3.signal(syscall.SIGKILL)
	p3.exit()
	p4 := m.startProc(bin, m.env("1h", "0s"))
	for seq := uint64(1); seq <= 3; seq++ {
		if got := post(t, p4.url, m.token, agentReport(boot, seq)); got != "duplicate" {
			t.Errorf("report %d after the second crash: %s, want duplicate (written before the crash)", seq, got)
		}
	}
	p4.signal(syscall.SIGTERM)
	if code := p4.exit(); code != 0 {
		t.Errorf("exit %d after SIGTERM:\n%s", code, p4.out.String())
	}
}

// TestShutdownServesTheLastScrape: on SIGTERM the flowserver stops taking reports (POST 503 with
// Retry-After, /readyz failing), writes its marks, and keeps serving /metrics with the final counters
// (and /healthz) for ZONETOLL_SHUTDOWN_METRICS_GRACE, then exits 0.
func TestShutdownServesTheLastScrape(t *testing.T) {
	m := newMarksFixture(t)
	bin := servicebuild.BinaryT(t, "flowserver")
	var boot [16]byte
	boot[0] = 0xc3
	// Long enough for the checks below on a loaded machine; they do not time anything.
	p := m.startProc(bin, m.env("1h", "20s"))
	for seq := uint64(1); seq <= 2; seq++ {
		if got := post(t, p.url, m.token, agentReport(boot, seq)); got != "applied" {
			t.Fatalf("report %d: %s", seq, got)
		}
	}
	p.signal(syscall.SIGTERM)
	m.waitFor("/readyz fails after SIGTERM", func() (bool, string) {
		resp, err := http.Get(p.url + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(b.String(), "taking-reports failed"), fmt.Sprint(resp.StatusCode, " ", b.String())
	})
	resp := reportpost.Post(t, p.url, m.token, reportpost.Gzip(t, agentReport(boot, 3)), "gzip")
	if resp.Status != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST after SIGTERM: %d (Retry-After %q) %s; want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"), resp.Body)
	}
	m.waitFor("the marks written at shutdown", func() (bool, string) {
		got := m.storedMark(boot)
		return got == 2, fmt.Sprint(got)
	})
	applied, _, bytes := counted(t, p.url)
	fams := metricstest.Scrape(t, p.url+"/metrics")
	refused, _ := fams.Value("zonetoll_flowserver_reports_total", map[string]string{"result": "rejected", "reason": "shutting_down"})
	if applied != 2 || bytes != 3000 || refused != 1 {
		t.Errorf("/metrics during the grace: applied %v, web→db bytes %v, shutting_down %v; want 2, 3000, 1", applied, bytes, refused)
	}
	if r, err := http.Get(p.url + "/healthz"); err != nil || r.StatusCode != http.StatusOK {
		t.Errorf("/healthz during the grace: %v %v", r, err)
	} else {
		r.Body.Close()
	}
	if code := p.exit(); code != 0 {
		t.Errorf("exit %d, want 0:\n%s", code, p.out.String())
	}
}
