package monitoring

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/tools/overlaycheck"
)

// built is the aws-monitoring overlay as krusty builds it, so the tests see exactly what is applied.
func built(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	objs, err := overlaycheck.Build(filesys.MakeFsOnDisk(), filepath.Join(repo.RootT(t), "kustomize", "overlays", "aws-monitoring"))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// ruleFile is the PrometheusRule's spec, which is a Prometheus rule file.
func ruleFile(t *testing.T) []byte {
	t.Helper()
	for _, o := range built(t) {
		if o.GetKind() == "PrometheusRule" {
			spec, ok := o.Object["spec"]
			if !ok {
				t.Fatalf("PrometheusRule %s has no spec", o.GetName())
			}
			data, err := yaml.Marshal(spec)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
	}
	t.Fatal("the monitoring component has no PrometheusRule")
	return nil
}

type rules struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert  string `json:"alert"`
			Record string `json:"record"`
			Expr   string `json:"expr"`
		} `json:"rules"`
	} `json:"groups"`
}

func promtool(t *testing.T) string {
	t.Helper()
	return gate.Command(t, "promtool", gate.Debian("prometheus"))
}

// runRuleTests writes the rule file and a promtool test file into a directory and runs
// `promtool check rules` and `promtool test rules` there.
func runRuleTests(t *testing.T, rulesYAML, testsYAML []byte) (string, error) {
	t.Helper()
	bin := promtool(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "zonetoll-rules.yaml"), rulesYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules_test.yaml"), testsYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, args := range [][]string{{"check", "rules", "zonetoll-rules.yaml"}, {"test", "rules", "rules_test.yaml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		out.Write(b)
		if err != nil {
			return out.String(), err
		}
	}
	return out.String(), nil
}

// TestRules: the built PrometheusRule passes `promtool check rules`, and every alert behaves as its
// unit tests in testdata/rules_test.yaml say (fires with these labels and annotations, or not at all).
func TestRules(t *testing.T) {
	tests, err := os.ReadFile("testdata/rules_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runRuleTests(t, ruleFile(t), tests)
	if err != nil {
		t.Fatalf("promtool: %v\n%s", err, out)
	}
}

// TestRuleTestsCanFail: the same tests against rules whose map-insert alert looks at the wrong metric
// must fail, so TestRules passing means something.
func TestRuleTestsCanFail(t *testing.T) {
	tests, err := os.ReadFile("testdata/rules_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(ruleFile(t)), "zonetoll_flowagent_map_insert_failed_packets_total", "zonetoll_flowagent_parse_failed_packets_total", 1)
	if broken == string(ruleFile(t)) {
		t.Fatal("the rule file has no map insert alert to break")
	}
	out, err := runRuleTests(t, []byte(broken), tests)
	if err == nil || !strings.Contains(out, "full flow map fires") {
		t.Fatalf("promtool accepted an alert on the wrong metric (err %v):\n%s", err, out)
	}
}

// TestEveryAlertTested: each alert has a promtool case where it fires and one where it does not.
func TestEveryAlertTested(t *testing.T) {
	var r rules
	if err := yaml.Unmarshal(ruleFile(t), &r); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/rules_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		Tests []struct {
			Name  string `json:"name"`
			Cases []struct {
				Alert string           `json:"alertname"`
				Exp   []map[string]any `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		t.Fatal(err)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, c := range tc.Cases {
			if len(c.Exp) > 0 {
				fires[c.Alert] = true
			} else {
				quiet[c.Alert] = true
			}
		}
	}
	want := []string{"ZonetollCrossZoneSpendUp", "ZonetollAgentNotReporting", "ZonetollMapInsertFailures", "ZonetollReportsRejected", "ZonetollUnresolvedBytesRising",
		// issue #20
		"ZonetollAgentDroppingBytes", "ZonetollAgentUnauthorized", "ZonetollReportsThrottled", "ZonetollDedupeEvictions", "ZonetollSeriesOverflow",
		"ZonetollForeignSourceFlows", "ZonetollDedupeNotSaved"}
	var alerts []string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			if rule.Alert == "" {
				continue
			}
			alerts = append(alerts, rule.Alert)
			if !fires[rule.Alert] {
				t.Errorf("alert %s has no test case where it fires", rule.Alert)
			}
			if !quiet[rule.Alert] {
				t.Errorf("alert %s has no test case where it does not fire", rule.Alert)
			}
		}
	}
	for _, w := range want {
		if !slices.Contains(alerts, w) {
			t.Errorf("alert %s is missing", w)
		}
	}
}

// TestRuleMetrics: every rule uses only metrics zonetoll exposes.
func TestRuleMetrics(t *testing.T) {
	var r rules
	if err := yaml.Unmarshal(ruleFile(t), &r); err != nil {
		t.Fatal(err)
	}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			names, err := MetricNames(rule.Expr)
			if err != nil {
				t.Errorf("%s: %v", rule.Alert, err)
				continue
			}
			for _, n := range names {
				if !IsExposed(n) {
					t.Errorf("%s uses %s, which zonetoll does not expose", rule.Alert, n)
				}
			}
		}
	}
}

// TestDashboards: the three dashboards are ConfigMaps for the Grafana sidecar, valid JSON, and every
// query parses as PromQL and uses only metrics zonetoll exposes.
func TestDashboards(t *testing.T) {
	uids := map[string]bool{}
	for _, o := range built(t) {
		if o.GetKind() != "ConfigMap" || o.GetLabels()["grafana_dashboard"] == "" {
			continue
		}
		if got := o.GetLabels()["grafana_dashboard"]; got != "1" {
			t.Errorf("%s: grafana_dashboard=%q, the sidecar's default wants \"1\"", o.GetName(), got)
		}
		data, _, _ := unstructured.NestedStringMap(o.Object, "data")
		if len(data) != 1 {
			t.Errorf("%s: %d files, want one dashboard per ConfigMap", o.GetName(), len(data))
		}
		for file, content := range data {
			d, err := ParseDashboard([]byte(content))
			if err != nil {
				t.Errorf("%s/%s: %v", o.GetName(), file, err)
				continue
			}
			if uids[d.UID] {
				t.Errorf("%s: uid %s used twice", file, d.UID)
			}
			uids[d.UID] = true
			if len(d.Queries) == 0 {
				t.Errorf("%s: no queries", file)
			}
			for _, q := range d.Queries {
				expanded, err := ExpandGrafana(q)
				if err != nil {
					t.Errorf("%s: %v", file, err)
					continue
				}
				names, err := MetricNames(expanded)
				if err != nil {
					t.Errorf("%s: %v", file, err)
					continue
				}
				if len(names) == 0 {
					t.Errorf("%s: query %q reads no metric", file, q)
				}
				for _, n := range names {
					if !IsExposed(n) {
						t.Errorf("%s: query %q uses %s, which zonetoll does not expose", file, q, n)
					}
				}
			}
		}
	}
	for _, want := range []string{"zonetoll-cost", "zonetoll-traffic", "zonetoll-health"} {
		if !uids[want] {
			t.Errorf("dashboard %s missing", want)
		}
	}
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr    string
		want    []string
		wantErr string
	}{
		{expr: `sum by (le) (rate(a_bucket[5m])) / on() group_left b`, want: []string{"a_bucket", "b"}},
		{expr: `{__name__="c", x="1"} offset 1w`, want: []string{"c"}},
		{expr: `label_replace(rate(d{z!=""}[1m]), "zone", "$1", "src_zone", "(.*)") unless e`, want: []string{"d", "e"}},
		{expr: `{__name__=~"zonetoll_.*"}`, wantErr: "name them exactly"},
		{expr: `sum(rate(x[5m])`, wantErr: "parsing"},
	}
	for _, tt := range tests {
		got, err := MetricNames(tt.expr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("MetricNames(%q) error %v, want %q", tt.expr, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("MetricNames(%q) = %v, %v; want %v", tt.expr, got, err, tt.want)
		}
	}
}

func TestExpandGrafana(t *testing.T) {
	got, err := ExpandGrafana(`rate(x[$__rate_interval]) + label_replace(y, "a", "$1", "b", "(.*)")`)
	if err != nil || got != `rate(x[5m]) + label_replace(y, "a", "$1", "b", "(.*)")` {
		t.Errorf("got %q, %v", got, err)
	}
	if _, err := ExpandGrafana(`x{namespace="$namespace"}`); err == nil {
		t.Error("an undefined dashboard variable was accepted")
	}
}

func TestIsExposed(t *testing.T) {
	for name, want := range map[string]bool{
		"zonetoll_traffic_bytes_total":                             true,
		"zonetoll_flowserver_report_apply_duration_seconds_bucket": true,
		"zonetoll_traffic_bytes_total_bucket":                      false, // a counter has no buckets
		"zonetoll_flowserver_reports_rejected_total":               false,
		"up": false,
	} {
		if got := IsExposed(name); got != want {
			t.Errorf("IsExposed(%s) = %t, want %t", name, got, want)
		}
	}
}

var literalRE = regexp.MustCompile(`"((?:zonetoll|pod_cross_zone)_[a-z0-9_]+)"`)

// TestExposedMatchesCodeAndDocs keeps Exposed equal to what the services register: every listed
// zonetoll family is a string literal in the services' or shared code and is named in docs/, and every
// literal in the code that names a metric (it ends like one) is listed.
func TestExposedMatchesCodeAndDocs(t *testing.T) {
	root := repo.RootT(t)
	inCode := map[string]bool{}
	for _, dir := range []string{"services", "shared"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range literalRE.FindAllStringSubmatch(string(data), -1) {
				inCode[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var docs strings.Builder
	pages, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs.Write(data)
	}
	for name := range Exposed {
		if !strings.HasPrefix(name, "zonetoll_") && !strings.HasPrefix(name, "pod_cross_zone_") {
			continue // standard collectors
		}
		if !inCode[name] {
			t.Errorf("%s is listed but no service's code names it", name)
		}
		// The docs abbreviate some names in lists (`_nodes`, `..._bytes_total`) after the full first one.
		short := name
		for _, prefix := range []string{"zonetoll_flowserver_", "zonetoll_flowagent_"} {
			if rest, ok := strings.CutPrefix(name, prefix); ok {
				short = rest
			}
		}
		if !strings.Contains(docs.String(), short) {
			t.Errorf("%s is listed but docs/*.md do not mention it", name)
		}
	}
	metricLike := regexp.MustCompile(`_(total|bytes|seconds|info|series|depth|leader|nodes|pods|keys|addresses|reports|zone|unit|byte)$`)
	for name := range inCode {
		if metricLike.MatchString(name) && !IsExposed(name) {
			t.Errorf("the code names metric %s, which Exposed does not list", name)
		}
	}
}
