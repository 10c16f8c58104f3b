package prometheus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"syscall"
	"testing"
	"time"
	"unsafe"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/testkit/freeport"
	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// e2eChildEnv marks the copy of the test binary that runs inside the private
// network namespace.
const e2eChildEnv = "ZONETOLL_PROMETHEUS_E2E_NETNS"

// TestPerZonePrometheusEndToEnd runs one real Prometheus per zone with
// Kubernetes discovery against the test cluster and checks the targets each
// one scrapes, and that pods move when their zone changes.
//
// Prometheus tries to scrape every kept pod IP, so everything (etcd,
// kube-apiserver, both Prometheus servers) runs in a fresh network namespace
// that has only loopback: scrapes of the test's pod addresses fail at once
// with "network is unreachable" and no packet leaves the namespace. The test
// re-runs itself in a child process created with CLONE_NEWNET; the namespace
// disappears with that process, so there is nothing to clean up.
func TestPerZonePrometheusEndToEnd(t *testing.T) {
	if os.Getenv(e2eChildEnv) == "1" {
		perZoneEndToEnd(t)
		return
	}
	bins := BinariesT(t)
	testcluster.Need(t)
	gate.Root(t) // a network namespace of its own (CLONE_NEWNET)
	runInPrivateNetns(t, "TestPerZonePrometheusEndToEnd", 0, EnvBinDir+"="+filepath.Dir(bins.Promtool))
}

// runInPrivateNetns re-runs the test named test in a child copy of the test
// binary that has a network namespace of its own (CLONE_NEWNET, only
// loopback), plus whatever unshare asks for, with env added and
// e2eChildEnv=1. The namespaces disappear with the child process.
func runInPrivateNetns(t *testing.T, test string, unshare uintptr, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(append(os.Environ(), e2eChildEnv+"=1"), env...)
	// Unshareflags with CLONE_NEWNS also makes the child's mounts private
	// before it starts, so nothing it mounts reaches the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Unshareflags: unshare, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("end-to-end run in a private network namespace failed: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+test)) {
		t.Fatalf("child run did not report a pass:\n%s", out)
	}
	t.Logf("child run:\n%s", tail(string(out), 15))
}

// perZoneEndToEnd is the body run inside the private network namespace.
func perZoneEndToEnd(t *testing.T) {
	if err := onlyLoopback(); err != nil {
		t.Fatalf("refusing to run Prometheus outside a loopback-only namespace: %v", err)
	}
	bins := BinariesT(t)
	const ns = "apps"
	c, ctx := zonedCluster(t, []string{ns}, nodeA, nodeB)
	// Pods created already labelled, as zonelabeler leaves them.
	pods := map[string]struct{ node, zone, ip string }{
		"a-1": {"node-a", "zone-a", "198.18.1.10"},
		"a-2": {"node-a", "zone-a", "fd00:0:0:1::10"},
		"b-1": {"node-b", "zone-b", "198.18.2.10"},
	}
	for name, p := range pods {
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{
			Namespace: ns, Name: name, NodeName: p.node, IPs: []string{p.ip},
			Labels: map[string]string{testcluster.LabelZone: p.zone, testcluster.LabelRegion: "region-1"},
		}); err != nil {
			t.Fatal(err)
		}
		annotate(ctx, t, c, ns, name, map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9100"})
	}
	access := podReader(ctx, t, c, ns, "prometheus-zone")
	kubeconfig := writeTokenKubeconfig(t, access)

	servers := map[string]string{}
	for _, zone := range []string{"zone-a", "zone-b"} {
		cfg := writeTemp(t, "prometheus-"+zone+".yml", withKubeconfig(t, renderPrometheus(t, zone), kubeconfig))
		servers[zone] = startPrometheus(ctx, t, bins.Prometheus, cfg)
	}

	waitForPods(ctx, t, servers, map[string][]string{"zone-a": {"a-1", "a-2"}, "zone-b": {"b-1"}})

	// node-b moves to zone-a; zonelabeler would relabel its pod. The pod
	// must leave zone-b's server and join zone-a's.
	patch := []byte(`{"metadata":{"labels":{"topology.kubernetes.io/zone":"zone-a"}}}`)
	if _, err := c.Client.CoreV1().Pods(ns).Patch(ctx, "b-1", types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: testcluster.FieldManager}); err != nil {
		t.Fatal(err)
	}
	waitForPods(ctx, t, servers, map[string][]string{"zone-a": {"a-1", "a-2", "b-1"}, "zone-b": nil})
}

// Nodes of the zone tests.
var (
	nodeA = testcluster.NodeSpec{Name: "node-a", Zone: "zone-a", Region: "region-1", InternalIPs: []string{"198.18.1.1"}}
	nodeB = testcluster.NodeSpec{Name: "node-b", Zone: "zone-b", Region: "region-1", InternalIPs: []string{"198.18.2.1"}}
)

// zonedCluster starts a test cluster holding namespaces and nodes, and returns it with a context that
// ends with the test (3 minutes at most).
func zonedCluster(t *testing.T, namespaces []string, nodes ...testcluster.NodeSpec) (*testcluster.Cluster, context.Context) {
	t.Helper()
	c := testcluster.StartT(t, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	// Not deferred: parallel subtests run after the test function returns.
	t.Cleanup(cancel)
	for _, ns := range namespaces {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		if _, err := c.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	return c, ctx
}

// podReader is the service account ns/name of a per-zone server, with exactly the RBAC
// docs/zonelabeler.md tells users to grant it.
func podReader(ctx context.Context, t *testing.T, c *testcluster.Cluster, ns, name string) *testcluster.ServiceAccountAccess {
	t.Helper()
	access, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{
		Namespace: ns, Name: name,
		ClusterRules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return access
}

func annotate(ctx context.Context, t *testing.T, c *testcluster.Cluster, ns, name string, annotations map[string]string) {
	t.Helper()
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: testcluster.FieldManager}); err != nil {
		t.Fatalf("annotating pod %s: %v", name, err)
	}
}

// onlyLoopback brings lo up and checks that it is the only interface, so no
// scrape can leave the namespace.
func onlyLoopback() error {
	ifaces, err := net.Interfaces()
	if err != nil {
		return fmt.Errorf("listing interfaces: %w", err)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		return fmt.Errorf("interfaces %v, want only lo", ifaces)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return fmt.Errorf("opening socket for ioctl: %w", err)
	}
	defer syscall.Close(fd)
	var req struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], "lo")
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("reading lo flags: %w", errno)
	}
	req.flags |= syscall.IFF_UP
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("bringing lo up: %w", errno)
	}
	return nil
}

// startPrometheus runs prometheus on a free loopback port until the test
// ends and returns its base URL once it is ready.
func startPrometheus(ctx context.Context, t *testing.T, bin, config string) string {
	t.Helper()
	addr := freeLoopbackAddr(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	url := "http://" + addr
	startProcess(ctx, t, "prometheus "+config, cmd, url+"/-/ready")
	return url
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// startProcess starts cmd with its output in a log file, stops it (SIGTERM,
// then SIGKILL after 30 s) when the test ends, printing the log's tail if
// the test failed, and returns once readyURL answers 200.
func startProcess(ctx context.Context, t *testing.T, name string, cmd *exec.Cmd, readyURL string) {
	t.Helper()
	logFile, err := os.Create(filepath.Join(t.TempDir(), "process.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logFile.Name())
			t.Logf("%s log:\n%s", name, tail(string(log), 30))
		}
	})
	for {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logFile.Name())
			t.Fatalf("%s exited before it was ready (%v):\n%s", name, cmd.ProcessState, tail(string(log), 30))
		case <-ctx.Done():
			t.Fatalf("%s not ready at %s: %v", name, readyURL, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type activeTarget struct {
	Labels    map[string]string `json:"labels"`
	ScrapeURL string            `json:"scrapeUrl"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

// activePods returns the pods a server actively scrapes, and their targets,
// from /api/v1/targets, which Prometheus and vmagent both serve.
func activePods(url string) ([]string, []activeTarget, error) {
	resp, err := http.Get(url + "/api/v1/targets?state=active")
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			ActiveTargets []activeTarget `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, nil, fmt.Errorf("decoding targets: %w", err)
	}
	var names []string
	for _, tg := range body.Data.ActiveTargets {
		names = append(names, tg.Labels["pod"])
	}
	sort.Strings(names)
	return names, body.Data.ActiveTargets, nil
}

// waitForPods polls each server's active targets until they are exactly
// want, and returns them per server. Prometheus' discovery and scrape manager
// each batch changes on a 5 s tick, so this takes 0-10 s there; vmagent
// re-reads discovery every -promscrape.kubernetesSDCheckInterval. The bound
// only stops a broken run.
func waitForPods(ctx context.Context, t *testing.T, servers map[string]string, want map[string][]string) map[string][]activeTarget {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		got := map[string][]string{}
		targets := map[string][]activeTarget{}
		var lastErr error
		for zone, url := range servers {
			names, tgs, err := activePods(url)
			if err != nil {
				lastErr = err
			}
			got[zone] = names
			targets[zone] = tgs
		}
		if lastErr == nil && reflect.DeepEqual(got, want) {
			// Scrapes of the pod addresses must have failed inside the
			// namespace, which proves they went nowhere.
			for _, tgs := range targets {
				for _, tg := range tgs {
					if tg.Health == "up" {
						t.Errorf("target %v is up: something answered on a pod address", tg.Labels)
					}
					if tg.LastError != "" {
						t.Logf("pod %s (%s): %s", tg.Labels["pod"], tg.Labels["instance"], tg.LastError)
					}
				}
			}
			return targets
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("active targets per zone: got %v (last error %v), want %v", got, lastErr, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
