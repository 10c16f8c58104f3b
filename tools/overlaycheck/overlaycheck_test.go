package overlaycheck

import (
	"bytes"
	"io/fs"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/tools/images"
)

func loadPolicy(t *testing.T) Policy {
	t.Helper()
	p, err := LoadPolicy(repo.RootT(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRealTargets: what users apply passes every check.
func TestRealTargets(t *testing.T) {
	root := repo.RootT(t)
	policy := loadPolicy(t)
	targets, err := Targets(root)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"aws": false, "gcp": false, "azure": false, "aws-monitoring": false, "labeler-only": false}
	for _, dir := range targets {
		want[filepath.Base(dir)] = true
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs, problems, err := CheckDir(filesys.MakeFsOnDisk(), dir, policy)
			if err != nil {
				t.Fatal(err)
			}
			if len(objs) == 0 {
				t.Fatal("built nothing")
			}
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
	for name, seen := range want {
		if !seen {
			t.Errorf("target %s was not found by Targets", name)
		}
	}
}

// memTree copies the real kustomize/ folder into an in-memory file system at /repo/kustomize.
func memTree(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	src := filepath.Join(repo.RootT(t), "kustomize")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/repo/kustomize", rel), data)
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// brokenHeader starts an overlay on the aws overlay: the base alone deploys no flowserver.
const brokenHeader = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../aws
`

func jsonPatch(kind, name, ops string) string {
	return "patches:\n  - target:\n      kind: " + kind + "\n      name: " + name + "\n    patch: |-\n" + indent(ops, "      ") + "\n"
}

// smPatch is a strategic merge patch of a workload's pod spec (lists such as env merge by name).
func smPatch(kind, name, namespace, podSpec string) string {
	body := "apiVersion: apps/v1\nkind: " + kind + "\nmetadata:\n  name: " + name + "\n  namespace: " + namespace +
		"\nspec:\n  template:\n    spec:\n" + indent(podSpec, "      ")
	return "patches:\n  - target:\n      kind: " + kind + "\n      name: " + name + "\n    patch: |-\n" + indent(body, "      ") + "\n"
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = pre + lines[i]
	}
	return strings.Join(lines, "\n")
}

// TestBrokenOverlays: each case breaks one invariant in an overlay of the real base; the check
// named must report it (and a clean overlay must report nothing, so the cases are not passing
// because the base itself is broken).
func TestBrokenOverlays(t *testing.T) {
	policy := loadPolicy(t)
	tests := []struct {
		name      string
		overlay   string            // kustomization.yaml after the header
		files     map[string]string // more files in the overlay folder
		wantCheck string            // "" means no problem at all
		wantText  string
	}{
		{name: "clean", overlay: ""},
		{name: "pinned by digest", overlay: "images:\n  - name: ghcr.io/zonetoll/zonelabeler\n    digest: sha256:0123456789012345678901234567890123456789012345678901234567890123\n"},
		{name: "latest", overlay: "images:\n  - name: ghcr.io/zonetoll/zonelabeler\n    newTag: latest\n",
			wantCheck: "images", wantText: "latest"},
		{name: "mixed releases", overlay: "images:\n  - name: ghcr.io/zonetoll/flowagent\n    newTag: v0.2.0\n",
			wantCheck: "images", wantText: "different releases"},
		{name: "no tag", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: replace
  path: /spec/template/spec/containers/0/image
  value: registry.example:5000/flowagent`), wantCheck: "images", wantText: "not pinned"},
		{name: "no limits", overlay: jsonPatch("Deployment", "zonelabeler", `
- op: remove
  path: /spec/template/spec/containers/0/resources/limits`), wantCheck: "resources", wantText: "no memory limit"},
		{name: "init container without requests", overlay: jsonPatch("Deployment", "zonelabeler", `
- op: add
  path: /spec/template/spec/initContainers
  value: [{name: wait, image: "busybox:1.36", securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}}]`),
			wantCheck: "resources", wantText: "container wait has no cpu request"},
		{name: "no readiness probe", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: remove
  path: /spec/template/spec/containers/0/readinessProbe`), wantCheck: "probes", wantText: "no readiness probe"},
		{name: "wider verb", overlay: jsonPatch("ClusterRole", "zonetoll-zonelabeler", `
- op: add
  path: /rules/0/verbs/-
  value: delete`), wantCheck: "rbac", wantText: "zonelabeler may delete pods"},
		{name: "get not needed", overlay: jsonPatch("ClusterRole", "zonetoll-flowagent", `
- op: add
  path: /rules/0/verbs/-
  value: get`), wantCheck: "rbac", wantText: "flowagent may get pods"},
		{name: "wildcard resource", overlay: jsonPatch("ClusterRole", "zonetoll-flowagent", `
- op: replace
  path: /rules/0/resources
  value: ["*"]`), wantCheck: "rbac", wantText: "may list *"},
		{name: "lease rule without its name", overlay: jsonPatch("Role", "zonelabeler", `
- op: remove
  path: /rules/0/resourceNames`), wantCheck: "rbac", wantText: "may get leases"},
		{name: "namespaced rule made cluster-wide", overlay: "resources:\n  - crole.yaml\n", files: map[string]string{"crole.yaml": `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: zonelabeler-leases
  labels: {app.kubernetes.io/name: zonelabeler, app.kubernetes.io/part-of: zonetoll}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [create]
`}, wantCheck: "rbac", wantText: "at cluster scope"},
		{name: "binding to cluster-admin", overlay: "resources:\n  - binding.yaml\n", files: map[string]string{"binding.yaml": `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: zonelabeler-admin
  labels: {app.kubernetes.io/name: zonelabeler, app.kubernetes.io/part-of: zonetoll}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: zonelabeler, namespace: zonetoll}]
`}, wantCheck: "rbac", wantText: "binds ClusterRole cluster-admin"},
		{name: "unknown setting", overlay: jsonPatch("Deployment", "zonelabeler", `
- op: add
  path: /spec/template/spec/containers/0/env/-
  value: {name: ZONETOLL_WORKER_COUNT, value: "8"}`), wantCheck: "settings", wantText: "ZONETOLL_WORKER_COUNT, which zonelabeler does not read"},
		{name: "another service's setting", overlay: jsonPatch("Deployment", "zonelabeler", `
- op: add
  path: /spec/template/spec/containers/0/env/-
  value: {name: ZONETOLL_NODE_NAME, value: "n1"}`), wantCheck: "settings", wantText: "ZONETOLL_NODE_NAME"},
		{name: "unknown setting through envFrom", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: add
  path: /spec/template/spec/containers/0/envFrom
  value: [{configMapRef: {name: agent-settings}}]`) + "configMapGenerator:\n  - name: agent-settings\n    namespace: zonetoll-agent\n    literals: [ZONETOLL_INTERVALL=5s]\n    options: {disableNameSuffixHash: true, labels: {app.kubernetes.io/name: flowagent, app.kubernetes.io/part-of: zonetoll}}\n",
			wantCheck: "settings", wantText: "ZONETOLL_INTERVALL"},
		{name: "service selects nothing", overlay: jsonPatch("Service", "zonelabeler", `
- op: replace
  path: /spec/selector
  value: {app.kubernetes.io/name: zone-labeler}`), wantCheck: "labels", wantText: "selects no workload"},
		{name: "selector not matching its template", overlay: jsonPatch("Deployment", "zonelabeler", `
- op: add
  path: /spec/selector/matchLabels/tier
  value: control`), wantCheck: "labels", wantText: "does not select its own pod template"},
		{name: "label missing", overlay: jsonPatch("ServiceAccount", "flowagent", `
- op: remove
  path: /metadata/labels/app.kubernetes.io~1part-of`), wantCheck: "labels", wantText: "app.kubernetes.io/part-of=zonetoll missing"},
		{name: "no PDB", overlay: jsonPatch("PodDisruptionBudget", "zonelabeler", `
- op: replace
  path: /spec/selector/matchLabels
  value: {app.kubernetes.io/name: nobody}`), wantCheck: "disruption", wantText: "no PodDisruptionBudget"},
		{name: "capability not in the table", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: add
  path: /spec/template/spec/containers/0/securityContext/capabilities/add/-
  value: SYS_ADMIN`), wantCheck: "security", wantText: "adds capability SYS_ADMIN"},
		{name: "non-root service as root", overlay: jsonPatch("Deployment", "zonelabeler", `
- op: replace
  path: /spec/template/spec/securityContext/runAsNonRoot
  value: false`), wantCheck: "security", wantText: "runAsNonRoot"},
		{name: "privilege escalation", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: remove
  path: /spec/template/spec/containers/0/securityContext/allowPrivilegeEscalation`), wantCheck: "security", wantText: "allowPrivilegeEscalation"},
		{name: "privileged", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: add
  path: /spec/template/spec/containers/0/securityContext/privileged
  value: true`), wantCheck: "security", wantText: "is privileged"},
		{name: "stack namespace not restricted", overlay: jsonPatch("Namespace", "zonetoll", `
- op: replace
  path: /metadata/labels/pod-security.kubernetes.io~1enforce
  value: baseline`), wantCheck: "podsecurity", wantText: "want restricted"},
		{name: "agent in the stack's namespace", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: replace
  path: /metadata/namespace
  value: zonetoll`), wantCheck: "podsecurity", wantText: "share the namespace"},
		{name: "namespace without Pod Security level", overlay: jsonPatch("Namespace", "zonetoll-agent", `
- op: remove
  path: /metadata/labels/pod-security.kubernetes.io~1enforce`), wantCheck: "podsecurity", wantText: "no pod-security.kubernetes.io/enforce"},
		{name: "no default deny", overlay: "patches:\n  - patch: |-\n      $patch: delete\n      apiVersion: networking.k8s.io/v1\n      kind: NetworkPolicy\n      metadata: {name: default-deny-ingress, namespace: zonetoll}\n",
			wantCheck: "networkpolicy", wantText: "no default-deny"},
		{name: "metrics port opened by no policy", overlay: "patches:\n  - patch: |-\n      $patch: delete\n      apiVersion: networking.k8s.io/v1\n      kind: NetworkPolicy\n      metadata: {name: costcalc, namespace: zonetoll}\n",
			wantCheck: "networkpolicy", wantText: "Deployment/zonetoll/costcalc: container costcalc port 8080 (http)"},
		{name: "policy opens another port", overlay: jsonPatch("NetworkPolicy", "zonelabeler", `
- op: replace
  path: /spec/ingress/0/ports/0/port
  value: 9999`), wantCheck: "networkpolicy", wantText: "zonelabeler port 8080"},
		// TLS (docs/deploy.md#tls).
		{name: "without cert-manager", overlay: "components:\n  - ../../components/tls-without-cert-manager\n"},
		{name: "agent over plain HTTP", overlay: smPatch("DaemonSet", "flowagent", "zonetoll-agent", `
containers:
  - name: flowagent
    env:
      - {name: ZONETOLL_SERVER_URL, value: "http://flowserver-{zone}.zonetoll:8080"}`), wantCheck: "tls", wantText: "is plain HTTP: the agents' bearer tokens"},
		{name: "agent allows plain HTTP", overlay: smPatch("DaemonSet", "flowagent", "zonetoll-agent", `
containers:
  - name: flowagent
    env:
      - {name: ZONETOLL_ALLOW_PLAINTEXT, value: "true"}`), wantCheck: "tls", wantText: "ZONETOLL_ALLOW_PLAINTEXT=true: plain HTTP is for tests"},
		{name: "costcalc scrapes over plain HTTP", overlay: `configMapGenerator:
  - name: costcalc-settings
    namespace: zonetoll
    behavior: merge
    literals:
      - ZONETOLL_TARGETS=http://flowserver-us-east-1a.zonetoll:8080/metrics,https://flowserver-us-east-1b.zonetoll:8080/metrics,https://flowserver-us-east-1c.zonetoll:8080/metrics
`, wantCheck: "tls", wantText: `plain HTTP target "http://flowserver-us-east-1a.zonetoll:8080/metrics"`},
		{name: "flowserver without TLS", overlay: smPatch("Deployment", "flowserver-us-east-1b", "zonetoll", `
containers:
  - name: flowserver
    env:
      - {name: ZONETOLL_HTTP_TLS_CERT_FILE, $patch: delete}
      - {name: ZONETOLL_HTTP_TLS_KEY_FILE, $patch: delete}`), wantCheck: "tls", wantText: "ZONETOLL_HTTP_TLS_CERT_FILE is not set"},
		{name: "flowserver probed over HTTP", overlay: jsonPatch("Deployment", "flowserver-us-east-1a", `
- op: replace
  path: /spec/template/spec/containers/0/readinessProbe/httpGet/scheme
  value: HTTP`), wantCheck: "tls", wantText: "probe /readyz uses HTTP"},
		{name: "CA mounted through subPath", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: add
  path: /spec/template/spec/containers/0/volumeMounts/3/subPath
  value: ca.crt`), wantCheck: "tls", wantText: "mounted through subPath"},
		{name: "certificate without the Service's name", overlay: jsonPatch("Certificate", "flowserver-us-east-1c", `
- op: replace
  path: /spec/dnsNames
  value: [flowserver.zonetoll.svc]`), wantCheck: "tls", wantText: "not flowserver-us-east-1c.zonetoll, the name agents and costcalc dial"},
		{name: "CA from a Secret no Certificate writes", overlay: jsonPatch("DaemonSet", "flowagent", `
- op: replace
  path: /spec/template/spec/volumes/3/secret/secretName
  value: some-ca`), wantCheck: "tls", wantText: "Secret zonetoll-agent/some-ca, which no cert-manager Certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memTree(t)
			dir := "/repo/kustomize/overlays/broken"
			if err := mem.WriteFile(dir+"/kustomization.yaml", []byte(brokenHeader+tt.overlay)); err != nil {
				t.Fatal(err)
			}
			for name, content := range tt.files {
				if err := mem.WriteFile(dir+"/"+name, []byte(content)); err != nil {
					t.Fatal(err)
				}
			}
			objs, err := Build(mem, dir)
			if err != nil {
				t.Fatalf("%v\nkustomization:\n%s", err, brokenHeader+tt.overlay)
			}
			problems := Check(objs, policy)
			if tt.wantCheck == "" {
				for _, p := range problems {
					t.Error(p)
				}
				return
			}
			found := false
			for _, p := range problems {
				if p.Check == tt.wantCheck && strings.Contains(p.String(), tt.wantText) {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s problem mentioning %q; got %d problems: %v", tt.wantCheck, tt.wantText, len(problems), problems)
			}
		})
	}
}

func TestParseRBACTable(t *testing.T) {
	table := func(rows ...string) string {
		return "text\n" + rbacBegin + "\n| service | API group | resource | verbs | scope | resource names | why |\n| --- | --- | --- | --- | --- | --- | --- |\n" +
			strings.Join(rows, "\n") + "\n" + rbacEnd + "\n"
	}
	tests := []struct {
		name    string
		md      string
		want    []RBACRow
		wantErr string
	}{
		{name: "core and named group", md: table(
			"| a | `\"\"` (core) | pods | list, watch | cluster | | why |",
			"| a | coordination.k8s.io | leases | get, update | namespace | `x`, y | why |"),
			want: []RBACRow{
				{Service: "a", APIGroup: "", Resource: "pods", Verbs: []string{"list", "watch"}, Cluster: true},
				{Service: "a", APIGroup: "coordination.k8s.io", Resource: "leases", Verbs: []string{"get", "update"}, ResourceNames: []string{"x", "y"}},
			}},
		{name: "no markers", md: "| a | b |", wantErr: "no RBAC table"},
		{name: "bad scope", md: table("| a | apps | deployments | get | everywhere | | why |"), wantErr: "scope"},
		{name: "missing verbs", md: table("| a | apps | deployments | | cluster | | why |"), wantErr: "incomplete"},
		{name: "wrong cell count", md: table("| a | apps | deployments | get | cluster |"), wantErr: "cells"},
		{name: "empty", md: table(), wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRBACTable(tt.md)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d rows %+v, want %+v", len(got), got, tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Service != w.Service || g.APIGroup != w.APIGroup || g.Resource != w.Resource || g.Cluster != w.Cluster ||
					strings.Join(g.Verbs, ",") != strings.Join(w.Verbs, ",") || strings.Join(g.ResourceNames, ",") != strings.Join(w.ResourceNames, ",") {
					t.Errorf("row %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

func TestAllows(t *testing.T) {
	named := RBACRow{Service: "s", APIGroup: "g", Resource: "r", Verbs: []string{"get"}, ResourceNames: []string{"a", "b"}}
	open := RBACRow{Service: "s", APIGroup: "", Resource: "pods", Verbs: []string{"list"}, Cluster: true}
	zoned := RBACRow{Service: "s", APIGroup: "", Resource: "configmaps", Verbs: []string{"get"}, ResourceNames: []string{"cm-<zone>"}}
	tests := []struct {
		name    string
		row     RBACRow
		svc     string
		group   string
		res     string
		verb    string
		cluster bool
		names   []string
		want    bool
	}{
		{"exact", open, "s", "", "pods", "list", true, nil, true},
		{"narrower by name", open, "s", "", "pods", "list", true, []string{"p"}, true},
		{"other service", open, "t", "", "pods", "list", true, nil, false},
		{"other verb", open, "s", "", "pods", "watch", true, nil, false},
		{"namespace row used cluster-wide", named, "s", "g", "r", "get", true, []string{"a"}, false},
		{"named row, names subset", named, "s", "g", "r", "get", false, []string{"b"}, true},
		{"named row, no names", named, "s", "g", "r", "get", false, nil, false},
		{"named row, other name", named, "s", "g", "r", "get", false, []string{"a", "c"}, false},
		{"zone pattern", zoned, "s", "", "configmaps", "get", false, []string{"cm-us-east-1a"}, true},
		{"zone pattern, empty zone", zoned, "s", "", "configmaps", "get", false, []string{"cm-"}, false},
		{"zone pattern, other prefix", zoned, "s", "", "configmaps", "get", false, []string{"other-us-east-1a"}, false},
		{"zone pattern, not a zone", zoned, "s", "", "configmaps", "get", false, []string{"cm-a/b"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.row.allows(tt.svc, tt.group, tt.res, tt.verb, tt.cluster, tt.names); got != tt.want {
				t.Errorf("allows = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseSettingsReadsGeneratedPages(t *testing.T) {
	p := loadPolicy(t)
	for svc, want := range map[string][]string{
		"zonelabeler": {"ZONETOLL_LEADER_ELECTION_NAMESPACE", "ZONETOLL_LEADER_ELECTION_IDENTITY", "ZONETOLL_HTTP_LISTEN_ADDRESS"},
		"flowagent":   {"ZONETOLL_NODE_NAME", "ZONETOLL_TOKEN_FILE", "ZONETOLL_SPOOL_DIR", "ZONETOLL_BPF_PIN_DIR"},
	} {
		for _, v := range want {
			if !p.Settings[svc][v] {
				t.Errorf("settings of %s lack %s (parsed %d names)", svc, v, len(p.Settings[svc]))
			}
		}
	}
	if p.Settings["zonelabeler"]["ZONETOLL_NODE_NAME"] {
		t.Error("zonelabeler's settings contain flowagent's ZONETOLL_NODE_NAME")
	}
	if got := p.Capabilities["flowagent"]; strings.Join(got, ",") != "BPF,NET_ADMIN,PERFMON" {
		t.Errorf("flowagent capabilities = %v, want BPF, NET_ADMIN, PERFMON", got)
	}
}

// TestLabelerOnlyExamplesMatchDocs: kustomize cannot read files outside the overlay, so the overlay
// holds copies of the documented examples; they must stay the same bytes.
func TestLabelerOnlyExamplesMatchDocs(t *testing.T) {
	root := repo.RootT(t)
	for _, f := range []string{"prometheus.yml", "vmagent.yml"} {
		docs, err := os.ReadFile(filepath.Join(root, "docs", "examples", "per-zone-scrape", f))
		if err != nil {
			t.Fatal(err)
		}
		overlay, err := os.ReadFile(filepath.Join(root, "kustomize", "overlays", "labeler-only", "per-zone-scrape", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(docs, overlay) {
			t.Errorf("kustomize/overlays/labeler-only/per-zone-scrape/%s differs from docs/examples/per-zone-scrape/%s: copy the docs version over it", f, f)
		}
	}
}

// TestEveryBaseInStack: a service folder under kustomize/base must be part of the whole stack, and be a
// service that has an image and a settings page (else its settings cannot be checked).
func TestEveryBaseInStack(t *testing.T) {
	root := repo.RootT(t)
	stack, err := os.ReadFile(filepath.Join(root, "kustomize", "base", "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(root, "kustomize", "base"))
	if err != nil {
		t.Fatal(err)
	}
	policy := loadPolicy(t)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		if !strings.Contains(string(stack), "\n  - "+e.Name()+"\n") {
			t.Errorf("kustomize/base/%s is not listed in kustomize/base/kustomization.yaml", e.Name())
		}
		// Not services: the namespace, and the cert-manager CA every service's certificate comes from.
		if e.Name() == "namespace" || e.Name() == "tls" {
			continue
		}
		if _, ok := policy.Settings[e.Name()]; !ok {
			t.Errorf("kustomize/base/%s has no docs/settings/%s.md", e.Name(), e.Name())
		}
		if _, err := images.Lookup(e.Name()); err != nil {
			t.Errorf("kustomize/base/%s: %v", e.Name(), err)
		}
	}
}

// TestWithoutCertManager: components/tls-without-cert-manager leaves no cert-manager object in the
// build (a cluster without its CRDs can apply it) and keeps every TLS mount, so the pods expect exactly
// the Secrets docs/deploy.md tells the operator to create.
func TestWithoutCertManager(t *testing.T) {
	mem := memTree(t)
	dir := "/repo/kustomize/overlays/broken"
	if err := mem.WriteFile(dir+"/kustomization.yaml", []byte(brokenHeader+"components:\n  - ../../components/tls-without-cert-manager\n")); err != nil {
		t.Fatal(err)
	}
	objs, err := Build(mem, dir)
	if err != nil {
		t.Fatal(err)
	}
	with, err := Build(mem, "/repo/kustomize/overlays/aws")
	if err != nil {
		t.Fatal(err)
	}
	certManager := func(objs []*unstructured.Unstructured) (n int) {
		for _, o := range objs {
			if strings.HasPrefix(o.GetAPIVersion(), certManagerGroup+"/") {
				n++
			}
		}
		return n
	}
	if n := certManager(with); n != 3+3+2 {
		t.Errorf("aws has %d cert-manager objects, want 8 (issuer, CA, ClusterIssuer, three zones, agents, costcalc)", n)
	}
	if n := certManager(objs); n != 0 {
		t.Errorf("%d cert-manager objects left without cert-manager", n)
	}
	if len(objs) != len(with)-8 {
		t.Errorf("%d objects without cert-manager, want the %d of aws less its 8 cert-manager objects", len(objs), len(with))
	}
	secrets := map[string]bool{}
	for _, o := range objs {
		vols, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
		for _, v := range vols {
			if name, ok, _ := unstructured.NestedString(v.(map[string]any), "secret", "secretName"); ok {
				secrets[o.GetNamespace()+"/"+name] = true
			}
		}
	}
	for _, want := range []string{"zonetoll/flowserver-us-east-1a-tls", "zonetoll/flowserver-us-east-1c-tls", "zonetoll/costcalc-tls", "zonetoll-agent/flowagent-tls"} {
		if !secrets[want] {
			t.Errorf("no pod mounts the Secret %s (mounted: %v)", want, secrets)
		}
	}
}
