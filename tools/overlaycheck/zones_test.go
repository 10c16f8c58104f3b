package overlaycheck

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/testkit/repo"
)

// zoneFolder is the aws overlay's folder of us-east-1a copied as docs/deploy.md says to add a zone, with
// the name suffix and the zone label set to suffix and zone.
func zoneFolder(t *testing.T, suffix, zone string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repo.RootT(t), "kustomize", "overlays", "aws", "zones", "us-east-1a", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, repl := range map[string]string{"nameSuffix: -us-east-1a\n": "nameSuffix: -" + suffix + "\n", "topology.kubernetes.io/zone: us-east-1a\n": "topology.kubernetes.io/zone: " + zone + "\n"} {
		if strings.Count(s, old) != 1 {
			t.Fatalf("the us-east-1a folder has %d lines %q, want 1", strings.Count(s, old), old)
		}
		s = strings.Replace(s, old, repl, 1)
	}
	return s
}

// TestBrokenZones: each case breaks the per-zone invariant of the aws overlay in one place (a zone
// listed in one place and forgotten in another); the zones check must name it.
func TestBrokenZones(t *testing.T) {
	policy := loadPolicy(t)
	const header = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../aws\n"
	zoneD := map[string]string{"zones/us-east-1d/kustomization.yaml": zoneFolder(t, "us-east-1d", "us-east-1d")}
	targets := func(zones ...string) string {
		var urls []string
		for _, z := range zones {
			urls = append(urls, "https://flowserver-"+z+".zonetoll:8080/metrics")
		}
		return "configMapGenerator:\n  - name: costcalc-settings\n    namespace: zonetoll\n    behavior: merge\n    literals:\n      - ZONETOLL_TARGETS=" + strings.Join(urls, ",") + "\n"
	}
	all4 := targets("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d")
	tests := []struct {
		name     string
		header   string // default header
		overlay  string // after the header, whose last line is the resources list
		files    map[string]string
		wantText string // "" means no zones problem at all
	}{
		{name: "clean"},
		{name: "a fourth zone listed everywhere", overlay: "  - zones/us-east-1d\n" + all4, files: zoneD},
		{name: "zone without costcalc target", overlay: "  - zones/us-east-1d\n", files: zoneD,
			wantText: "flowserver-us-east-1d.zonetoll:8080/metrics"},
		{name: "costcalc target of a zone without server", overlay: all4,
			wantText: "every flowserver exactly once"},
		{name: "zone left out of costcalc", overlay: targets("us-east-1a", "us-east-1c"), wantText: "every flowserver exactly once"},
		{name: "zone folder not listed", overlay: all4, files: zoneD,
			wantText: `zones: zones/us-east-1d: no flowserver serves zone "us-east-1d": list zones/us-east-1d`},
		{name: "folder's name suffix and label differ", overlay: "  - zones/us-east-1d\n" + all4,
			files:    map[string]string{"zones/us-east-1d/kustomization.yaml": zoneFolder(t, "us-east-1d", "us-east-1e")},
			wantText: `the flowserver of zone "us-east-1e" must be named flowserver-us-east-1e`},
		{name: "folder named for another zone", overlay: "  - zones/us-east-1e\n" + all4,
			files:    map[string]string{"zones/us-east-1e/kustomization.yaml": zoneFolder(t, "us-east-1d", "us-east-1d")},
			wantText: `zones/us-east-1e: no flowserver serves zone "us-east-1e"`},
		{name: "no zone at all", header: strings.Replace(header, "../aws", "../../base", 1),
			wantText: "the build deploys no flowserver"},
		{name: "server not pinned", overlay: jsonPatch("Deployment", "flowserver-us-east-1b", `
- op: remove
  path: /spec/template/spec/nodeSelector`), wantText: "nodeSelector or a required node affinity"},
		{name: "pinned to another zone", overlay: jsonPatch("Deployment", "flowserver-us-east-1b", `
- op: replace
  path: /spec/template/spec/nodeSelector/topology.kubernetes.io~1zone
  value: us-east-1c`), wantText: `pinned to zone "us-east-1b"`},
		{name: "affinity excludes the nodeSelector's zone", overlay: jsonPatch("Deployment", "flowserver-us-east-1b", `
- op: add
  path: /spec/template/spec/affinity
  value: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [us-east-1c]}]}]}}}`),
			wantText: `pinned to zone "us-east-1b" by a nodeSelector or a required node affinity on topology.kubernetes.io/zone (got [])`},
		{name: "zone setting differs from the label", overlay: jsonPatch("Deployment", "flowserver-us-east-1b", `
- op: replace
  path: /spec/template/spec/containers/0/env/0
  value: {name: ZONETOLL_ZONE, value: us-east-1c}`), wantText: `zone "us-east-1c" has a second flowserver`},
		{name: "Service selects every zone", overlay: jsonPatch("Service", "flowserver-us-east-1a", `
- op: remove
  path: /spec/selector/topology.kubernetes.io~1zone`), wantText: "only them"},
		{name: "agents at one server", overlay: "patches:\n  - patch: |-\n" + indent(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: flowagent, namespace: zonetoll-agent}
spec:
  template:
    spec:
      containers:
        - name: flowagent
          env: [{name: ZONETOLL_SERVER_URL, value: "https://flowserver-us-east-1a.zonetoll:8080"}]`, "      ") + "\n", wantText: "https://flowserver-{zone}.zonetoll:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memTree(t)
			dir := "/repo/kustomize/overlays/broken"
			h := header
			if tt.header != "" {
				h = tt.header
			}
			files := map[string]string{"kustomization.yaml": h + tt.overlay}
			for k, v := range tt.files {
				files[k] = v
			}
			for name, content := range files {
				if err := mem.WriteFile(dir+"/"+name, []byte(content)); err != nil {
					t.Fatal(err)
				}
			}
			_, problems, err := CheckDir(mem, dir, policy)
			if err != nil {
				t.Fatalf("%v\nkustomization:\n%s", err, files["kustomization.yaml"])
			}
			var zoneProblems []Problem
			for _, p := range problems {
				// tls too: a zone folder copied as the docs say gets a certificate of its own name.
				if p.Check == "zones" || p.Check == "tls" {
					zoneProblems = append(zoneProblems, p)
				}
			}
			if tt.wantText == "" {
				for _, p := range zoneProblems {
					t.Error(p)
				}
				return
			}
			for _, p := range zoneProblems {
				if strings.Contains(p.String(), tt.wantText) {
					return
				}
			}
			t.Errorf("no zones problem mentioning %q; got %v", tt.wantText, zoneProblems)
		})
	}
}

func TestServerZone(t *testing.T) {
	fromLabel := corev1.EnvVar{Name: zoneSetting, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['topology.kubernetes.io/zone']"}}}
	tests := []struct {
		name   string
		env    []corev1.EnvVar
		labels map[string]string
		want   string
	}{
		{name: "literal", env: []corev1.EnvVar{{Name: zoneSetting, Value: "a"}}, want: "a"},
		{name: "from the pods' label", env: []corev1.EnvVar{fromLabel}, labels: map[string]string{zoneLabel: "b"}, want: "b"},
		{name: "label missing", env: []corev1.EnvVar{fromLabel}, want: ""},
		{name: "from another field", env: []corev1.EnvVar{{Name: zoneSetting, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}}}, want: ""},
		{name: "not set", env: []corev1.EnvVar{{Name: "OTHER", Value: "a"}}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := workload{template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: tt.labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: tt.env}}},
			}}
			if got := serverZone(w); got != tt.want {
				t.Errorf("serverZone = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPinnedZones(t *testing.T) {
	affinity := func(zones ...string) *corev1.Affinity {
		return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: zoneLabel, Operator: corev1.NodeSelectorOpIn, Values: zones}}}},
		}}}
	}
	tests := []struct {
		name string
		spec corev1.PodSpec
		want []string
	}{
		{name: "unpinned", want: nil},
		{name: "nodeSelector", spec: corev1.PodSpec{NodeSelector: map[string]string{zoneLabel: "a"}}, want: []string{"a"}},
		{name: "other nodeSelector key", spec: corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}}, want: nil},
		{name: "affinity", spec: corev1.PodSpec{Affinity: affinity("b", "a")}, want: []string{"a", "b"}},
		{name: "both agree", spec: corev1.PodSpec{NodeSelector: map[string]string{zoneLabel: "a"}, Affinity: affinity("a", "b")}, want: []string{"a"}},
		{name: "both disagree", spec: corev1.PodSpec{NodeSelector: map[string]string{zoneLabel: "a"}, Affinity: affinity("b")}, want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := pinnedZones(tt.spec)
			if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
				t.Errorf("pinnedZones = %#v, want %#v", got, tt.want)
			}
		})
	}
}
