package overlaycheck

import (
	"strings"
	"testing"
)

// TestBrokenZones: each case breaks the per-zone invariant of the aws overlay in one place (a zone
// listed in one place and forgotten in another); the zones check must name it.
func TestBrokenZones(t *testing.T) {
	policy := loadPolicy(t)
	const header = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: zonetoll\nresources:\n  - ../aws\n"
	zoneD := map[string]string{
		"zones/us-east-1d/kustomization.yaml": "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../../../base/flowserver/workload\n  - zone.yaml\ncomponents:\n  - ../../../../components/flowserver-zone\n",
		"zones/us-east-1d/zone.yaml":          "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flowserver-zone\n  annotations: {config.kubernetes.io/local-config: \"true\"}\ndata:\n  zone: us-east-1d\n",
	}
	targets := func(zones ...string) string {
		var urls []string
		for _, z := range zones {
			urls = append(urls, "http://flowserver-"+z+".zonetoll:8080/metrics")
		}
		return "configMapGenerator:\n  - name: costcalc-settings\n    namespace: zonetoll\n    behavior: merge\n    literals:\n      - ZONETOLL_TARGETS=" + strings.Join(urls, ",") + "\n"
	}
	tests := []struct {
		name     string
		overlay  string // after the header, whose last line is the resources list
		files    map[string]string
		wantText string // "" means no zones problem at all
	}{
		{name: "clean"},
		{name: "a fourth zone listed everywhere", overlay: "  - zones/us-east-1d\n" + targets("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"), files: zoneD},
		{name: "zone without costcalc target", overlay: "  - zones/us-east-1d\n", files: zoneD,
			wantText: "flowserver-us-east-1d.zonetoll:8080/metrics"},
		{name: "costcalc target of a zone without server", overlay: targets("us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d"),
			wantText: "every flowserver exactly once"},
		{name: "zone left out of costcalc", overlay: targets("us-east-1a", "us-east-1c"), wantText: "every flowserver exactly once"},
		{name: "server not pinned", overlay: jsonPatch("Deployment", "flowserver-us-east-1b", `
- op: remove
  path: /spec/template/spec/affinity`), wantText: "required node affinity"},
		{name: "pinned to another zone", overlay: jsonPatch("Deployment", "flowserver-us-east-1b", `
- op: replace
  path: /spec/template/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0/values
  value: [us-east-1c]`), wantText: `pinned to zone "us-east-1b"`},
		{name: "Service selects every zone", overlay: jsonPatch("Service", "flowserver-us-east-1a", `
- op: remove
  path: /spec/selector/zonetoll.io~1zone`), wantText: "only them"},
		{name: "agents at one server", overlay: "patches:\n  - patch: |-\n" + indent(`
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: flowagent, namespace: zonetoll}
spec:
  template:
    spec:
      containers:
        - name: flowagent
          env: [{name: ZONETOLL_SERVER_URL, value: "http://flowserver-us-east-1a.zonetoll:8080"}]`, "      ") + "\n", wantText: "http://flowserver-{zone}.zonetoll:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memTree(t)
			dir := "/repo/kustomize/overlays/broken"
			files := map[string]string{"kustomization.yaml": header + tt.overlay}
			for k, v := range tt.files {
				files[k] = v
			}
			for name, content := range files {
				if err := mem.WriteFile(dir+"/"+name, []byte(content)); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := Build(mem, dir)
			if err != nil {
				t.Fatalf("%v\nkustomization:\n%s", err, files["kustomization.yaml"])
			}
			var zoneProblems []Problem
			for _, p := range Check(objs, policy) {
				if p.Check == "zones" {
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
