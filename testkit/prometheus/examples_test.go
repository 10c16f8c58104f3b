package prometheus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/zonetoll/zonetoll/testkit/testcluster"
	"github.com/zonetoll/zonetoll/testkit/vmagent"
)

// zonePlaceholder is what prometheus.yml holds where a zone goes.
const zonePlaceholder = "__ZONE__"

// Zone label values as the three clouds write them.
var exampleZones = []string{"us-east-1a", "europe-west1-b", "eastus-1"}

func examplePath(t testing.TB, name string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find the test's source dir")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "docs", "examples", "per-zone-scrape", name)
}

func readExample(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(examplePath(t, name))
	if err != nil {
		t.Fatalf("reading example: %v", err)
	}
	return data
}

// renderPrometheus is what the example tells a user to do: replace the
// placeholder by the zone.
func renderPrometheus(t testing.TB, zone string) []byte {
	t.Helper()
	return bytes.ReplaceAll(readExample(t, "prometheus.yml"), []byte(zonePlaceholder), []byte(zone))
}

// renderVMAgent expands the example as vmagent would with ZONE=zone and
// translates it into the equivalent Prometheus config.
func renderVMAgent(t testing.TB, zone string) []byte {
	t.Helper()
	expanded, err := ExpandVMAgentEnv(readExample(t, "vmagent.yml"), map[string]string{"ZONE": zone})
	if err != nil {
		t.Fatal(err)
	}
	out, err := VMAgentAsPrometheus(expanded)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeTemp(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPrometheusExampleHasPlaceholders(t *testing.T) {
	var uses []string
	for _, line := range strings.Split(string(readExample(t, "prometheus.yml")), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") && strings.Contains(line, zonePlaceholder) {
			uses = append(uses, strings.TrimSpace(line))
		}
	}
	// The keep rule and the external label; another use would be a new place
	// users must edit, and the example's header would need to say so.
	want := []string{"prometheus_zone: " + zonePlaceholder, "regex: " + zonePlaceholder}
	if !reflect.DeepEqual(uses, want) {
		t.Errorf("placeholder used in %q, want %q", uses, want)
	}
}

func TestPrometheusExamplePassesPromtool(t *testing.T) {
	bins := BinariesT(t)
	ctx := context.Background()
	for _, zone := range exampleZones {
		t.Run(zone, func(t *testing.T) {
			rendered := renderPrometheus(t, zone)
			if bytes.Contains(rendered, []byte(zonePlaceholder)) {
				t.Fatalf("placeholder left after rendering")
			}
			if err := CheckConfig(ctx, bins.Promtool, writeTemp(t, "prometheus.yml", rendered)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestPromtoolRejectsBrokenConfigs shows the check can fail: the same example
// with a broken rule or an unknown field must not pass.
func TestPromtoolRejectsBrokenConfigs(t *testing.T) {
	bins := BinariesT(t)
	ctx := context.Background()
	good := renderPrometheus(t, "us-east-1a")
	tests := map[string][]byte{
		"invalid zone regex": renderPrometheus(t, "us-east-1a("),
		"unknown action":     bytes.Replace(good, []byte("action: keep"), []byte("action: keep_if_equal"), 1),
		"vmagent-only field": bytes.Replace(good, []byte("scrape_interval: 30s"), []byte("scrape_interval: 30s\n  relabel_configs: []"), 1),
	}
	for name, data := range tests {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(data, good) {
				t.Fatal("the test's edit did not change the example")
			}
			if err := CheckConfig(ctx, bins.Promtool, writeTemp(t, "prometheus.yml", data)); err == nil {
				t.Errorf("promtool accepted a broken config:\n%s", data)
			}
		})
	}
}

// TestVMAgentExampleNeedsZone: the example's zone comes only from ZONE. What
// vmagent does without it (keeps no pod) is checked end to end.
func TestVMAgentExampleNeedsZone(t *testing.T) {
	if _, err := ExpandVMAgentEnv(readExample(t, "vmagent.yml"), nil); err == nil {
		t.Error("vmagent.yml expands without ZONE; the zone rule would not be per zone")
	}
}

func TestVMAgentExampleRulesPassPromtool(t *testing.T) {
	bins := BinariesT(t)
	ctx := context.Background()
	for _, zone := range exampleZones {
		t.Run(zone, func(t *testing.T) {
			converted := renderVMAgent(t, zone)
			// The zone rule must be the first rule every job applies.
			var cfg struct {
				ScrapeConfigs []struct {
					JobName        string              `json:"job_name"`
					RelabelConfigs []map[string]any    `json:"relabel_configs"`
					KubernetesSD   []map[string]string `json:"kubernetes_sd_configs"`
				} `json:"scrape_configs"`
			}
			if err := json.Unmarshal(converted, &cfg); err != nil {
				t.Fatal(err)
			}
			for _, job := range cfg.ScrapeConfigs {
				if len(job.RelabelConfigs) == 0 {
					t.Fatalf("job %s has no relabel rules", job.JobName)
				}
				first := job.RelabelConfigs[0]
				if first["action"] != "keep" || first["regex"] != zone ||
					!reflect.DeepEqual(first["source_labels"], []any{"__meta_kubernetes_pod_label_topology_kubernetes_io_zone"}) {
					t.Errorf("job %s: first rule is %v, want keep on the pod zone label = %s", job.JobName, first, zone)
				}
				// global.relabel_configs applies to every job: only pod
				// discovery has the pod zone label.
				for _, sd := range job.KubernetesSD {
					if sd["role"] != "pod" {
						t.Errorf("job %s discovers role %s, whose targets the global pod-zone rule drops", job.JobName, sd["role"])
					}
				}
			}
			if err := CheckConfig(ctx, bins.Promtool, writeTemp(t, "vmagent-as-prometheus.yml", converted)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// withKubeconfig points every kubernetes_sd_config of a rendered config at
// the test cluster instead of the in-cluster service account.
func withKubeconfig(t testing.TB, config []byte, kubeconfig string) []byte {
	t.Helper()
	js, err := yaml.ToJSON(config)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, j := range cfg["scrape_configs"].([]any) {
		sds, _ := j.(map[string]any)["kubernetes_sd_configs"].([]any)
		for _, sd := range sds {
			sd.(map[string]any)["kubeconfig_file"] = kubeconfig
			n++
		}
	}
	if n == 0 {
		t.Fatal("config has no kubernetes_sd_configs")
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// examplePod is a pod the discovery test creates, already labelled as
// zonelabeler would label it.
type examplePod struct {
	name, node, ip string
	annotations    map[string]string
	phase          corev1.PodPhase
}

// zoneAPods are the pods on node-a each example must sort out: scraped over IPv4 and over IPv6, on a
// path of its own, not opted in, failed.
func zoneAPods(scrape map[string]string) []examplePod {
	return []examplePod{
		{name: "a-v4", node: "node-a", ip: "198.18.1.10", annotations: scrape},
		{name: "a-v6", node: "node-a", ip: "fd00:0:0:1::10", annotations: scrape},
		{name: "a-path", node: "node-a", ip: "198.18.1.11", annotations: map[string]string{"prometheus.io/scrape": "true", "prometheus.io/path": "/stats"}},
		{name: "a-no-optin", node: "node-a", ip: "198.18.1.12"},
		{name: "a-failed", node: "node-a", ip: "198.18.1.13", annotations: scrape, phase: corev1.PodFailed},
	}
}

// TestExamplesKeepOnlyOwnZone runs the real Kubernetes service discovery of
// both examples against a real API server (promtool check service-discovery
// discovers and relabels without scraping, so no traffic goes to pod IPs)
// and checks that each zone's config keeps exactly the opted-in pods of its
// zone, with the right address and labels.
func TestExamplesKeepOnlyOwnZone(t *testing.T) {
	bins := BinariesT(t)
	const ns = "apps"
	// A node without zone label: its pods get none either.
	nodeX := testcluster.NodeSpec{Name: "node-x", InternalIPs: []string{"198.18.3.1"}}
	c, ctx := zonedCluster(t, []string{ns}, nodeA, nodeB, nodeX)
	zoneOf := map[string]string{}
	for _, n := range []testcluster.NodeSpec{nodeA, nodeB, nodeX} {
		zoneOf[n.Name] = n.Zone
	}
	scrape := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
	pods := append(zoneAPods(scrape),
		examplePod{name: "b-v4", node: "node-b", ip: "198.18.2.10", annotations: scrape},
		examplePod{name: "b-v6", node: "node-b", ip: "fd00:0:0:2::10", annotations: scrape},
		examplePod{name: "x-unlabelled", node: "node-x", ip: "198.18.3.10", annotations: scrape},
	)
	for _, p := range pods {
		labels := map[string]string{"app": p.name}
		if z := zoneOf[p.node]; z != "" {
			labels[testcluster.LabelZone] = z
			labels[testcluster.LabelRegion] = "region-1"
		}
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{
			Namespace: ns, Name: p.name, NodeName: p.node, IPs: []string{p.ip}, Labels: labels, Phase: p.phase,
		}); err != nil {
			t.Fatal(err)
		}
		if len(p.annotations) > 0 {
			annotate(ctx, t, c, ns, p.name, p.annotations)
		}
	}

	// Discovery runs with exactly the permissions docs/zonelabeler.md tells
	// users to grant a per-zone server, not as an admin.
	access := podReader(ctx, t, c, ns, "prometheus-zone")
	kubeconfig := writeTokenKubeconfig(t, access)

	// What a user checks on each server's /targets page: pod -> address,
	// path and the labels the series get.
	type kept struct{ Address, Path, Namespace, Pod, Node, Zone string }
	// Sorted by pod, as the check sorts what it got.
	want := map[string][]kept{
		"zone-a": {
			{"198.18.1.11", "/stats", ns, "a-path", "node-a", "zone-a"},
			{"198.18.1.10:9100", "/metrics", ns, "a-v4", "node-a", "zone-a"},
			{"[fd00:0:0:1::10]:9100", "/metrics", ns, "a-v6", "node-a", "zone-a"},
		},
		"zone-b": {
			{"198.18.2.10:9100", "/metrics", ns, "b-v4", "node-b", "zone-b"},
			{"[fd00:0:0:2::10]:9100", "/metrics", ns, "b-v6", "node-b", "zone-b"},
		},
	}
	examples := map[string]func(testing.TB, string) []byte{
		"prometheus.yml": renderPrometheus,
		"vmagent.yml":    renderVMAgent,
	}
	for example, render := range examples {
		for zone, wantKept := range want {
			t.Run(example+"/"+zone, func(t *testing.T) {
				t.Parallel()
				cfg := writeTemp(t, "config.yml", withKubeconfig(t, render(t, zone), kubeconfig))
				// promtool listens for this long; the first listing of a few
				// pods over loopback arrives well within it.
				targets, err := DiscoverTargets(ctx, bins.Promtool, cfg, "kubernetes-pods", 10*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				var got []kept
				seen := map[string]bool{}
				for _, tg := range targets {
					seen[tg.DiscoveredLabels["__meta_kubernetes_pod_name"]] = true
					if len(tg.Error) > 0 {
						t.Errorf("target %v: relabelling error %s", tg.DiscoveredLabels, tg.Error)
					}
					if tg.Dropped() {
						continue
					}
					l := tg.Labels
					got = append(got, kept{l["__address__"], l["__metrics_path__"], l["namespace"], l["pod"], l["node"], l["zone"]})
				}
				// Every pod was discovered, so a missing one means it was
				// dropped by a rule, not that discovery was slow.
				for _, p := range pods {
					if !seen[p.name] {
						t.Fatalf("pod %s was not discovered within the wait; targets: %s", p.name, fmt.Sprint(targets))
					}
				}
				sort.Slice(got, func(i, j int) bool { return got[i].Pod < got[j].Pod })
				if !reflect.DeepEqual(got, wantKept) {
					t.Errorf("kept targets:\n got %+v\nwant %+v", got, wantKept)
				}
			})
		}
	}
}

// writeTokenKubeconfig writes a kubeconfig that authenticates with the
// service account's token only.
func writeTokenKubeconfig(t testing.TB, access *testcluster.ServiceAccountAccess) string {
	t.Helper()
	cfg := access.Config
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: access.Token}
	kc.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "sa"}
	kc.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("writing service account kubeconfig: %v", err)
	}
	return path
}

// vmagentDryRun runs vmagent's own config check on config with env as its
// whole environment: its parser in strict mode (unknown fields are errors),
// %{ENV} expansion and every relabel rule's compilation. A job with a broken
// rule does not fail the dry run: vmagent logs an error, skips the job and
// exits 0, as it would when it runs. So every line at level ERROR counts as a
// failure too.
func vmagentDryRun(ctx context.Context, bin, config string, env []string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-promscrape.config="+config, "-promscrape.config.dryRun",
		"-promscrape.config.strictParse", "-loggerLevel=ERROR")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("vmagent -promscrape.config.dryRun %s: %w\n%s", config, err, tail(string(out), 20))
	}
	if out := bytes.TrimSpace(out); len(out) > 0 {
		return fmt.Errorf("vmagent -promscrape.config.dryRun %s exited 0 but logged errors:\n%s", config, tail(string(out), 20))
	}
	return nil
}

// TestVMAgentExamplePassesDryRun checks the shipped vmagent.yml, unmodified,
// with the real vmagent's parser for each zone.
func TestVMAgentExamplePassesDryRun(t *testing.T) {
	bin := vmagent.BinaryT(t)
	for _, zone := range exampleZones {
		t.Run(zone, func(t *testing.T) {
			if err := vmagentDryRun(t.Context(), bin, examplePath(t, "vmagent.yml"), []string{"ZONE=" + zone}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestVMAgentDryRunRejectsBrokenConfigs shows the dry run can fail: the
// example with a broken rule or with a field vmagent does not know must not
// pass. (Without ZONE it passes: vmagent leaves %{ZONE} as it is.)
func TestVMAgentDryRunRejectsBrokenConfigs(t *testing.T) {
	bin := vmagent.BinaryT(t)
	good := readExample(t, "vmagent.yml")
	zone := []string{"ZONE=us-east-1a"}
	tests := map[string]struct {
		config []byte
		env    []string
	}{
		"invalid zone regex": {good, []string{"ZONE=us-east-1a("}},
		"unknown action":     {bytes.Replace(good, []byte("action: keep"), []byte("action: keep_if_same"), 1), zone},
		"unknown field":      {bytes.Replace(good, []byte("scrape_interval: 30s"), []byte("scrape_interval: 30s\n  scrape_intervall: 30s"), 1), zone},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(tt.config, good) && tt.env[0] == zone[0] {
				t.Fatal("the test's edit did not change the example")
			}
			if err := vmagentDryRun(t.Context(), bin, writeTemp(t, "vmagent.yml", tt.config), tt.env); err == nil {
				t.Errorf("vmagent accepted a broken config:\n%s", tt.config)
			}
		})
	}
}
