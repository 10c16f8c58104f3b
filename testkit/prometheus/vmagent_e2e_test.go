package prometheus

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
	"github.com/zonetoll/zonetoll/testkit/vmagent"
)

// Environment of the child run: where the parent put the binaries.
const (
	e2eVMAgentEnv  = "ZONETOLL_E2E_VMAGENT"
	e2eLabelerEnv  = "ZONETOLL_E2E_ZONELABELER"
	e2eParentMntNS = "ZONETOLL_E2E_PARENT_MNTNS" // the parent's mount namespace, which the child must not be in
	serviceAccount = "kubernetes.io/serviceaccount"
)

// vmagentSDCheckInterval replaces vmagent's default of 30 s so the test
// waits seconds, not half a minute, per change; the example's comment and
// docs/zonelabeler.md give the default's effect.
const vmagentSDCheckInterval = "2s"

// TestPerZoneVMAgentEndToEnd runs one real vmagent per zone with the shipped
// docs/examples/per-zone-scrape/vmagent.yml, unmodified (the file itself is
// passed; only ZONE comes from the environment, as the example says), and
// in-cluster Kubernetes discovery against the test cluster, where the real
// zonelabeler labels the pods. Each vmagent must keep exactly its zone's pods
// as targets: the pods there at start, a pod created later, and the pods of
// a node whose zone changes, which the labeler relabels.
//
// As in TestPerZonePrometheusEndToEnd, everything runs in a child with a
// loopback-only network namespace, so scrapes of the pod addresses go
// nowhere. The child also has a mount namespace of its own, where a tmpfs
// on /run holds the service account files vmagent reads in-cluster
// (/var/run/secrets/kubernetes.io/serviceaccount); the host's /run is
// untouched.
func TestPerZoneVMAgentEndToEnd(t *testing.T) {
	if os.Getenv(e2eChildEnv) == "1" {
		perZoneVMAgentEndToEnd(t)
		return
	}
	bin := vmagent.BinaryT(t)
	testcluster.Need(t)
	gate.Root(t) // network and mount namespaces of its own
	// Built here: the child's namespace cannot reach the module proxy.
	labeler := servicebuild.BinaryT(t, "zonelabeler")
	mntNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	runInPrivateNetns(t, "TestPerZoneVMAgentEndToEnd", syscall.CLONE_NEWNS,
		e2eVMAgentEnv+"="+bin, e2eLabelerEnv+"="+labeler, e2eParentMntNS+"="+mntNS)
}

func perZoneVMAgentEndToEnd(t *testing.T) {
	if err := onlyLoopback(); err != nil {
		t.Fatalf("refusing to run vmagent outside a loopback-only namespace: %v", err)
	}
	vmagentBin, labelerBin := os.Getenv(e2eVMAgentEnv), os.Getenv(e2eLabelerEnv)
	if vmagentBin == "" || labelerBin == "" {
		t.Fatalf("child run without %s or %s", e2eVMAgentEnv, e2eLabelerEnv)
	}
	const ns = "apps"
	c, ctx := zonedCluster(t, []string{ns, "monitoring"}, nodeA, nodeB,
		testcluster.NodeSpec{Name: "node-c", Zone: "zone-c", Region: "region-1", InternalIPs: []string{"198.18.3.1"}},
		// A node without zone label: the labeler gives its pods none.
		testcluster.NodeSpec{Name: "node-x", InternalIPs: []string{"198.18.4.1"}})
	startLabeler(ctx, t, labelerBin, c.Kubeconfig)

	scrape := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
	create := func(p examplePod) {
		t.Helper()
		// Created without zone labels: the labeler adds them.
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{
			Namespace: ns, Name: p.name, NodeName: p.node, IPs: []string{p.ip}, Phase: p.phase,
		}); err != nil {
			t.Fatal(err)
		}
		if len(p.annotations) > 0 {
			annotate(ctx, t, c, ns, p.name, p.annotations)
		}
	}
	for _, p := range append(zoneAPods(scrape),
		examplePod{name: "b-1", node: "node-b", ip: "198.18.2.10", annotations: scrape},
		examplePod{name: "c-1", node: "node-c", ip: "198.18.3.10", annotations: scrape},
		examplePod{name: "x-unlabelled", node: "node-x", ip: "198.18.4.10", annotations: scrape},
	) {
		create(p)
	}

	// vmagent runs as a per-zone server's service account with exactly the
	// RBAC docs/zonelabeler.md lists, found where a pod would have it.
	access := podReader(ctx, t, c, "monitoring", "vmagent-zone")
	mountServiceAccount(t, access, "monitoring")
	api, err := url.Parse(access.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(sink.Close)
	config := examplePath(t, "vmagent.yml")
	// What the kubelet sets in every container.
	inCluster := []string{"KUBERNETES_SERVICE_HOST=" + api.Hostname(), "KUBERNETES_SERVICE_PORT=" + api.Port()}
	servers := map[string]string{}
	for _, zone := range []string{"zone-a", "zone-b", "zone-c"} {
		servers[zone] = startVMAgent(ctx, t, vmagentBin, config, sink.URL, "ZONE="+zone, inCluster)
	}
	// A Deployment that forgot ZONE: vmagent leaves %{ZONE} as it is, and
	// the keep rule then matches no pod. It must keep nothing, never another
	// zone's pods.
	const noZone = "ZONE unset"
	servers[noZone] = startVMAgent(ctx, t, vmagentBin, config, sink.URL, noZone, inCluster)

	// What a user checks on each vmagent's /targets page: the pods, the
	// URL each is scraped at, and the labels its series get.
	type target struct{ URL, Namespace, Pod, Node, Zone string }
	check := func(want map[string][]string, wantURLs map[string]string) {
		t.Helper()
		want[noZone] = nil
		for zone, tgs := range waitForPods(ctx, t, servers, want) {
			for _, tg := range tgs {
				l := tg.Labels
				got := target{tg.ScrapeURL, l["namespace"], l["pod"], l["node"], l["zone"]}
				if w := (target{wantURLs[l["pod"]], ns, l["pod"], got.Node, zone}); got != w || got.Node == "" {
					t.Errorf("vmagent of %s: target %+v, want %+v", zone, got, w)
				}
			}
		}
	}
	urls := map[string]string{
		"a-v4":   "http://198.18.1.10:9100/metrics",
		"a-v6":   "http://[fd00:0:0:1::10]:9100/metrics",
		"a-path": "http://198.18.1.11/stats",
		"b-1":    "http://198.18.2.10:9100/metrics",
		"b-2":    "http://198.18.2.11:9100/metrics",
		"c-1":    "http://198.18.3.10:9100/metrics",
	}
	check(map[string][]string{"zone-a": {"a-path", "a-v4", "a-v6"}, "zone-b": {"b-1"}, "zone-c": {"c-1"}}, urls)
	// The agent without ZONE keeps nothing because its rule drops every pod, not because it
	// discovered none: it lists the zone-labelled pods as dropped.
	waitDropped(ctx, t, servers[noZone], []string{"a-v4", "b-1", "c-1"})

	// A pod created while the agents run.
	create(examplePod{name: "b-2", node: "node-b", ip: "198.18.2.11", annotations: scrape})
	check(map[string][]string{"zone-a": {"a-path", "a-v4", "a-v6"}, "zone-b": {"b-1", "b-2"}, "zone-c": {"c-1"}}, urls)

	// node-b moves to zone-c: the labeler relabels its pods, which must
	// leave zone-b's vmagent and join zone-c's.
	patch := []byte(`{"metadata":{"labels":{"topology.kubernetes.io/zone":"zone-c"}}}`)
	if _, err := c.Client.CoreV1().Nodes().Patch(ctx, "node-b", types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: testcluster.FieldManager}); err != nil {
		t.Fatal(err)
	}
	check(map[string][]string{"zone-a": {"a-path", "a-v4", "a-v6"}, "zone-b": nil, "zone-c": {"b-1", "b-2", "c-1"}}, urls)
}

// waitDropped polls a vmagent's dropped targets until every pod of want is among them.
func waitDropped(ctx context.Context, t *testing.T, url string, want []string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		dropped, err := droppedPods(url)
		missing := slices.DeleteFunc(slices.Clone(want), func(p string) bool { return slices.Contains(dropped, p) })
		if err == nil && len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("vmagent %s: dropped targets %v (error %v), want them to include %v", url, dropped, err, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// droppedPods returns the pod names of a vmagent's dropped targets.
func droppedPods(url string) ([]string, error) {
	resp, err := http.Get(url + "/api/v1/targets?state=dropped")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			DroppedTargets []struct {
				DiscoveredLabels map[string]string `json:"discoveredLabels"`
			} `json:"droppedTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decoding dropped targets: %w", err)
	}
	var pods []string
	for _, d := range body.Data.DroppedTargets {
		pods = append(pods, d.DiscoveredLabels["__meta_kubernetes_pod_name"])
	}
	sort.Strings(pods)
	return pods, nil
}

// startLabeler runs the zonelabeler binary, alone (no leader election), with
// the given kubeconfig until the test ends.
func startLabeler(ctx context.Context, t *testing.T, bin, kubeconfig string) {
	t.Helper()
	addr := freeLoopbackAddr(t)
	cmd := exec.Command(bin, "run", "--kubeconfig", kubeconfig)
	cmd.Env = append(os.Environ(),
		"ZONETOLL_HTTP_LISTEN_ADDRESS="+addr,
		"ZONETOLL_LEADER_ELECTION_ENABLED=false",
		"ZONETOLL_LOG_FORMAT=text",
	)
	// Ready once its pod and node caches are synced.
	startProcess(ctx, t, "zonelabeler", cmd, "http://"+addr+"/readyz")
}

// startVMAgent runs vmagent with the config file as it is, a remote write
// sink, and as its whole environment zoneEnv ("ZONE=<zone>", or a name when
// ZONE is to be unset) and env, until the test ends; it returns the base URL
// once vmagent is healthy.
func startVMAgent(ctx context.Context, t *testing.T, bin, config, sink, zoneEnv string, env []string) string {
	t.Helper()
	addr := freeLoopbackAddr(t)
	cmd := exec.Command(bin,
		"-promscrape.config="+config,
		"-promscrape.kubernetesSDCheckInterval="+vmagentSDCheckInterval,
		"-httpListenAddr="+addr,
		"-remoteWrite.url="+sink+"/api/v1/write",
		"-remoteWrite.tmpDataPath="+filepath.Join(t.TempDir(), "remotewrite"),
	)
	cmd.Env = slices.Clone(env)
	if strings.HasPrefix(zoneEnv, "ZONE=") {
		cmd.Env = append(cmd.Env, zoneEnv)
	}
	u := "http://" + addr
	startProcess(ctx, t, "vmagent "+zoneEnv, cmd, u+"/health")
	return u
}

// mountServiceAccount puts the account's token, the cluster's CA and the
// namespace where in-cluster clients read them, on a tmpfs mounted over
// /run in this process' own mount namespace.
func mountServiceAccount(t *testing.T, access *testcluster.ServiceAccountAccess, namespace string) {
	t.Helper()
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if parent := os.Getenv(e2eParentMntNS); parent == "" || parent == self {
		t.Fatalf("refusing to mount over /run: this process is in %s, its parent in %q; want a mount namespace of its own", self, parent)
	}
	// Unshareflags already made the child's mounts private; again, so a
	// change of that in the parent cannot make this mount reach the host.
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Fatalf("making mounts private: %v", err)
	}
	run, err := filepath.EvalSymlinks("/var/run")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", run, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=1m,mode=0755"); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", run, err)
	}
	t.Cleanup(func() { syscall.Unmount(run, syscall.MNT_DETACH) })
	dir := filepath.Join("/var/run/secrets", serviceAccount)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ca := access.Config.CAData
	if len(ca) == 0 {
		t.Fatal("the service account's config has no CA data")
	}
	files := map[string][]byte{"token": []byte(access.Token), "ca.crt": ca, "namespace": []byte(namespace)}
	names := make([]string, 0, len(files))
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	sort.Strings(names)
	t.Logf("service account %s: %v in %s", access.Username, names, dir)
}
