package overlaycheck

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

const fieldManager = "zonetoll-overlaycheck"

// applier applies objects with server-side apply through the dynamic client.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}
}

func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("mapping %s: %w", gvk, err)
	}
	opts := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	if _, err := ri.Apply(ctx, o.GetName(), o, opts); err != nil {
		return fmt.Errorf("applying %s: %w", id(o), err)
	}
	return nil
}

// installCRDs creates the Prometheus Operator and cert-manager CRDs kept as test data and waits until
// they serve.
func installCRDs(t *testing.T, ctx context.Context, a *applier) {
	t.Helper()
	var files []string
	for _, dir := range []string{"testdata/prometheus-operator-crds", "testdata/cert-manager-crds"} {
		f, err := filepath.Glob(dir + "/*.yaml")
		if err != nil || len(f) == 0 {
			t.Fatalf("no CRDs in %s: %v", dir, err)
		}
		files = append(files, f...)
	}
	var names []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(data, &obj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		if err := a.apply(ctx, u, false); err != nil {
			t.Fatal(err)
		}
		names = append(names, u.GetName())
	}
	crds := a.dyn.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	for _, n := range names {
		waitFor(t, ctx, 60*time.Second, "CRD "+n+" established", func() (bool, error) {
			u, err := crds.Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				cm, _ := c.(map[string]any)
				if cm["type"] == "Established" && cm["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
	}
	a.mapper.Reset()
}

// waitFor polls cond until it holds; the deadline only bounds a hung test, it asserts no speed.
func waitFor(t *testing.T, ctx context.Context, limit time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not happen within %s (last error: %v)", what, limit, last)
}

// TestServerSideDryRun applies every target to a real kube-apiserver with server-side dry-run: the API
// server's strict decoding, defaulting, validation and admission (Pod Security included) see exactly
// what `kubectl apply -k` would send.
func TestServerSideDryRun(t *testing.T) {
	root := repo.RootT(t)
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	a := newApplier(t, c.Config)
	installCRDs(t, ctx, a)
	// Namespaced objects are only dry-run into a namespace that really exists: zonetoll, and
	// cert-manager's own, where base/tls keeps the CA (cert-manager's cluster resource namespace).
	for _, ns := range []string{"zonetoll", "cert-manager"} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	targets, err := Targets(root)
	if err != nil {
		t.Fatal(err)
	}
	var deployment, agentPod, certificate *unstructured.Unstructured
	for _, dir := range targets {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs, err := Build(filesys.MakeFsOnDisk(), dir)
			if err != nil {
				t.Fatal(err)
			}
			// The Namespace for real, so its Pod Security labels are the ones the pods below meet.
			for _, o := range objs {
				if o.GetKind() == "Namespace" {
					if err := a.apply(ctx, o, false); err != nil {
						t.Fatal(err)
					}
				}
			}
			for _, o := range objs {
				if err := a.apply(ctx, o, true); err != nil {
					t.Error(err)
				}
				if o.GetKind() == "Deployment" && deployment == nil {
					deployment = o.DeepCopy()
				}
				if o.GetKind() == "Certificate" && certificate == nil {
					certificate = o.DeepCopy()
				}
				// Pod Security admission enforces on pods, not on workloads: dry-run a pod of each.
				if pod := podOf(t, o); pod != nil {
					if err := a.apply(ctx, pod, true); err != nil {
						t.Errorf("a pod of %s: %v", id(o), err)
					}
					if o.GetKind() == "DaemonSet" && agentPod == nil {
						agentPod = pod
					}
				}
			}
		})
	}
	// The pod check must be able to fail: in a "restricted" namespace (what labeler-only makes of
	// zonetoll) the agent's pod (host network, hostPath, capabilities) is refused.
	t.Run("agent pod refused by restricted Pod Security", func(t *testing.T) {
		if agentPod == nil {
			t.Fatal("no DaemonSet in any target")
		}
		ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": "psa-restricted", "labels": map[string]any{"pod-security.kubernetes.io/enforce": "restricted"}}}}
		if err := a.apply(ctx, ns, false); err != nil {
			t.Fatal(err)
		}
		pod := agentPod.DeepCopy()
		pod.SetNamespace("psa-restricted")
		err := a.apply(ctx, pod, true)
		if err == nil || !strings.Contains(err.Error(), "violates PodSecurity") {
			t.Fatalf("dry-run of the agent's pod in a restricted namespace: err = %v, want a PodSecurity refusal", err)
		}
	})
	// The dry-run must be able to fail: a misspelt field is refused by strict decoding, and the
	// cert-manager objects are judged by their CRDs' schemas too.
	for _, tt := range []struct {
		kind  string
		obj   *unstructured.Unstructured
		field []string // path of the misspelt field
		value any
	}{
		{"Deployment", deployment, []string{"spec", "template", "spec", "terminationGracePeriod"}, int64(5)},
		{"Certificate", certificate, []string{"spec", "dnsName"}, []any{"flowserver.zonetoll.svc"}},
	} {
		t.Run("misspelt "+tt.kind+" field is refused", func(t *testing.T) {
			if tt.obj == nil {
				t.Fatalf("no %s in any target", tt.kind)
			}
			bad := tt.obj.DeepCopy()
			if err := unstructured.SetNestedField(bad.Object, tt.value, tt.field...); err != nil {
				t.Fatal(err)
			}
			misspelt := tt.field[len(tt.field)-1]
			if err := a.apply(ctx, bad, true); err == nil || !strings.Contains(err.Error(), misspelt) {
				t.Fatalf("dry-run of a %s with the unknown field %s: err = %v, want an error naming it", tt.kind, misspelt, err)
			}
		})
	}
	// And the user's own command, with kubectl's embedded kustomize: the kubectl of the server's
	// release, built beside it.
	kubectl := c.Kubectl()
	for _, dir := range targets {
		t.Run("kubectl/"+filepath.Base(dir), func(t *testing.T) {
			cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", c.Kubeconfig, "apply", "-k", dir,
				"--server-side", "--dry-run=server", "--field-manager", fieldManager)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl apply -k %s --server-side --dry-run=server: %v\n%s", dir, err, out)
			}
			if !strings.Contains(string(out), "serverside-applied (server dry run)") {
				t.Errorf("kubectl output does not show a server dry run:\n%s", out)
			}
		})
	}
}

// podOf returns a pod with the pod template of a Deployment, DaemonSet or StatefulSet, else nil.
func podOf(t *testing.T, o *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	switch o.GetKind() {
	case "Deployment", "DaemonSet", "StatefulSet":
	default:
		return nil
	}
	tmpl, ok, err := unstructured.NestedMap(o.Object, "spec", "template")
	if err != nil || !ok {
		t.Fatalf("%s has no pod template: %v", id(o), err)
	}
	pod := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Pod", "spec": tmpl["spec"]}}
	pod.SetNamespace(o.GetNamespace())
	pod.SetName(o.GetName() + "-podcheck")
	if md, ok := tmpl["metadata"].(map[string]any); ok {
		if l, ok := md["labels"].(map[string]any); ok {
			labels := map[string]string{}
			for k, v := range l {
				labels[k], _ = v.(string)
			}
			pod.SetLabels(labels)
		}
	}
	return pod
}

// rulesOf is Rules, failing the test on error.
func rulesOf(t *testing.T, dir string) (rules, clusterRules []rbacv1.PolicyRule) {
	t.Helper()
	rules, clusterRules, err := Rules(dir)
	if err != nil {
		t.Fatal(err)
	}
	return rules, clusterRules
}

// service is a running service binary whose log is kept and whose HTTP address is read from its
// "http server listening" line.
type service struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	log  strings.Builder
	addr chan string
	done chan error
}

var listenRe = regexp.MustCompile(`msg="http server listening".* address=(\S+)`)

func startService(t *testing.T, argv, env []string) *service {
	t.Helper()
	s := &service{addr: make(chan string, 1), done: make(chan error, 1)}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Env = append(os.Environ(), env...)
	s.cmd.Env = append(s.cmd.Env, "ZONETOLL_LOG_FORMAT=text", "ZONETOLL_HTTP_LISTEN_ADDRESS=127.0.0.1:0")
	// The service dies with the test binary even if the test crashes.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	s.cmd.Stdout, s.cmd.Stderr = pw, pw
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", argv[0], err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.log.WriteString(line + "\n")
			s.mu.Unlock()
			if m := listenRe.FindStringSubmatch(line); m != nil {
				select {
				case s.addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { s.done <- s.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		s.stop(t)
		if t.Failed() {
			t.Logf("%s log:\n%s", filepath.Base(argv[0]), s.output())
		}
	})
	return s
}

func (s *service) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.String()
}

// stop sends SIGTERM and waits; a service that ignores it is killed. Idempotent.
func (s *service) stop(t *testing.T) error {
	if s.cmd.ProcessState != nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(45 * time.Second):
		_ = s.cmd.Process.Kill()
		err := <-s.done
		s.done <- err
		t.Errorf("%s ignored SIGTERM for 45 s and was killed", s.cmd.Path)
		return err
	}
}

func (s *service) httpAddr(t *testing.T) string {
	t.Helper()
	select {
	case a := <-s.addr:
		s.addr <- a
		return a
	case err := <-s.done:
		s.done <- err
		t.Fatalf("service exited before listening: %v\n%s", err, s.output())
	case <-time.After(60 * time.Second):
		t.Fatalf("service did not start listening\n%s", s.output())
	}
	return ""
}

// get returns the status and body of a GET of url through client.
func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricValue returns the value of one exposition line (name with labels, exactly), or "" if absent.
func metricValue(body, series string) string {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimSpace(strings.TrimPrefix(line, series))
		}
	}
	return ""
}

// TestZonelabelerRBAC runs the real zonelabeler with a token bound to exactly the Role and ClusterRole
// of kustomize/base/zonelabeler: it must take the Lease and label a pod in another namespace, with no
// write refused. A second run without the pods patch rule must be refused, so the check can fail.
func TestZonelabelerRBAC(t *testing.T) {
	testcluster.Need(t)
	root := repo.RootT(t)
	rules, clusterRules := rulesOf(t, filepath.Join(root, "kustomize", "base", "zonelabeler"))
	bin := servicebuild.BinaryT(t, "zonelabeler")
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	for _, ns := range []string{"zl-rbac", "zl-norbac", "shop"} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: "n1", Zone: "eu-1a", Region: "eu-1", InternalIPs: []string{"198.18.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "shop", Name: "web-1", NodeName: "n1", IPs: []string{"198.18.1.1"}}); err != nil {
		t.Fatal(err)
	}
	run := func(t *testing.T, ns string, rules, clusterRules []rbacv1.PolicyRule) *service {
		sa, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: ns, Name: "zonelabeler", Rules: rules, ClusterRules: clusterRules})
		if err != nil {
			t.Fatal(err)
		}
		return startService(t, []string{bin, "run"}, []string{
			"KUBECONFIG=" + testcluster.KubeconfigT(t, sa.Config),
			// As the Deployment sets them from the downward API.
			"ZONETOLL_LEADER_ELECTION_NAMESPACE=" + ns,
			"ZONETOLL_LEADER_ELECTION_IDENTITY=zonelabeler-" + ns,
		})
	}

	t.Run("base rules suffice", func(t *testing.T) {
		s := run(t, "zl-rbac", rules, clusterRules)
		addr := s.httpAddr(t)
		waitFor(t, ctx, 90*time.Second, "lease zl-rbac/zonelabeler held by this replica", func() (bool, error) {
			l, err := c.Client.CoordinationV1().Leases("zl-rbac").Get(ctx, "zonelabeler", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity == "zonelabeler-zl-rbac", nil
		})
		labelledCleanly(t, ctx, c.Client, addr, "web-1")
		if code, _, _ := get(http.DefaultClient, "http://"+addr+"/readyz"); code != http.StatusOK {
			t.Errorf("/readyz = %d, want 200", code)
		}
		if err := s.stop(t); err != nil {
			t.Errorf("zonelabeler did not stop cleanly: %v", err)
		}
		// The lease is released on shutdown, which needs update on it: nobody holds it now.
		l, err := c.Client.CoordinationV1().Leases("zl-rbac").Get(ctx, "zonelabeler", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
			t.Errorf("lease still held by %q after shutdown", *l.Spec.HolderIdentity)
		}
	})

	t.Run("without patch the write is refused", func(t *testing.T) {
		var cut []rbacv1.PolicyRule
		for _, r := range clusterRules {
			r = *r.DeepCopy()
			var verbs []string
			for _, v := range r.Verbs {
				if v != "patch" {
					verbs = append(verbs, v)
				}
			}
			r.Verbs = verbs
			cut = append(cut, r)
		}
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "shop", Name: "web-2", NodeName: "n1", IPs: []string{"198.18.1.2"}}); err != nil {
			t.Fatal(err)
		}
		s := run(t, "zl-norbac", rules, cut)
		addr := s.httpAddr(t)
		waitFor(t, ctx, 90*time.Second, "a label write counted as forbidden", func() (bool, error) {
			_, body, err := get(http.DefaultClient, "http://"+addr+"/metrics")
			if err != nil {
				return false, err
			}
			v := metricValue(body, `zonetoll_zonelabeler_label_writes_total{result="forbidden"}`)
			return v != "" && v != "0", nil
		})
		p, err := c.Client.CoreV1().Pods("shop").Get(ctx, "web-2", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Labels["topology.kubernetes.io/zone"]; ok {
			t.Errorf("pod web-2 got labels %v without the patch permission", p.Labels)
		}
	})
}

// Environment of the re-executed flowagent test inside its own network namespace.
const (
	envInNetns      = "ZONETOLL_OVERLAYCHECK_IN_NETNS"
	envFlowagentBin = "ZONETOLL_OVERLAYCHECK_FLOWAGENT"
)

// TestFlowagentRBACAndCapabilities runs the real flowagent as the DaemonSet does: uid 0 with only the
// DaemonSet's added capabilities (bounding, permitted, effective, inheritable and ambient sets, with
// no-new-privs as allowPrivilegeEscalation: false sets it), and a token bound to exactly the
// ClusterRole of kustomize/base/flowagent. It must become ready: counter loaded and attached at
// netfilter, maps pinned, informers synced. Without each capability it must fail to start.
//
// Attaching changes the network namespace it runs in, so the test re-runs itself in a fresh network
// and mount namespace (unshare) with only loopback, its own bpffs and its own test cluster.
func TestFlowagentRBACAndCapabilities(t *testing.T) {
	testcluster.Need(t)
	if os.Getenv(envInNetns) != "1" {
		gate.Kernel(t)
		for _, tool := range []string{"unshare", "setpriv", "ip"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Fatalf("%s not found (util-linux, iproute2): %v", tool, err)
			}
		}
		// Built here: the namespace has no network for the module proxy.
		bin := servicebuild.BinaryT(t, "flowagent")
		args := []string{"--net", "--mount", "--propagation", "private", os.Args[0], "-test.run", "^TestFlowagentRBACAndCapabilities$", "-test.v"}
		cmd := exec.CommandContext(t.Context(), "unshare", args...)
		cmd.Env = append(os.Environ(), envInNetns+"=1", envFlowagentBin+"="+bin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		t.Logf("in a private network namespace:\n%s", out)
		if err != nil {
			t.Fatalf("the test in its network namespace failed: %v", err)
		}
		if !strings.Contains(string(out), "--- PASS: TestFlowagentRBACAndCapabilities") {
			t.Fatal("the re-executed test did not report a pass")
		}
		return
	}

	bin := os.Getenv(envFlowagentBin)
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v: %s", err, out)
	}
	bpffs := t.TempDir()
	// Mode 0700 as systemd mounts the host's: only its owner (root) may pin there.
	if err := syscall.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mounting bpffs: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(bpffs, syscall.MNT_DETACH) })

	root := repo.RootT(t)
	_, clusterRules := rulesOf(t, filepath.Join(root, "kustomize", "base", "flowagent"))
	caps := daemonSetCaps(t, filepath.Join(root, "kustomize", "base", "flowagent"))
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	if _, err := c.CreateNamespace(ctx, "zonetoll"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: "n1", Zone: "eu-1b", Region: "eu-1", InternalIPs: []string{"198.18.0.2"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "zonetoll", Name: "client", NodeName: "n1", IPs: []string{"198.18.2.1"}}); err != nil {
		t.Fatal(err)
	}
	sa, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "zonetoll", Name: "flowagent", ClusterRules: clusterRules})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := testcluster.KubeconfigT(t, sa.Config)
	// The projected token the flowserver gets has its own audience (as in the DaemonSet).
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("not-used-no-report-is-sent"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		drop      string // a capability of the DaemonSet left out
		wantReady bool
	}{
		{name: "daemonset capabilities", wantReady: true},
		{name: "without BPF", drop: "BPF"},
		{name: "without NET_ADMIN", drop: "NET_ADMIN"},
		{name: "without PERFMON", drop: "PERFMON"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var set []string
			for _, cp := range caps {
				if cp != tt.drop {
					set = append(set, "+"+strings.ToLower(cp))
				}
			}
			if tt.drop != "" && len(set) == len(caps) {
				t.Fatalf("the DaemonSet does not add %s: update this test with the manifest", tt.drop)
			}
			capArg := "-all"
			if len(set) > 0 {
				capArg += "," + strings.Join(set, ",")
			}
			argv := []string{"setpriv", "--reuid=0", "--regid=0", "--clear-groups",
				"--inh-caps=" + capArg, "--ambient-caps=" + capArg, "--bounding-set=" + capArg, "--no-new-privs",
				bin, "run"}
			s := startService(t, argv, []string{
				"KUBECONFIG=" + kubeconfig,
				"ZONETOLL_NODE_NAME=n1",
				"ZONETOLL_BPF_PIN_DIR=" + filepath.Join(bpffs, fmt.Sprintf("zonetoll-%d", i)),
				"ZONETOLL_TOKEN_FILE=" + tokenFile,
				// Nothing listens there; no report is due (loopback has no local pod or node source).
				"ZONETOLL_SERVER_URL=https://127.0.0.1:9/{zone}",
			})
			if !tt.wantReady {
				select {
				case err := <-s.done:
					s.done <- err
					if err == nil {
						t.Fatalf("flowagent without %s exited 0", tt.drop)
					}
					if !strings.Contains(s.output(), "operation not permitted") {
						t.Errorf("flowagent without %s failed, but not for lack of permission:\n%s", tt.drop, s.output())
					}
				case <-time.After(90 * time.Second):
					t.Fatalf("flowagent without %s still runs:\n%s", tt.drop, s.output())
				}
				return
			}
			addr := s.httpAddr(t)
			waitFor(t, ctx, 90*time.Second, "flowagent /readyz ok", func() (bool, error) {
				select {
				case err := <-s.done:
					s.done <- err
					t.Fatalf("flowagent exited: %v\n%s", err, s.output())
				default:
				}
				code, body, err := get(http.DefaultClient, "http://"+addr+"/readyz")
				if err != nil {
					return false, err
				}
				return code == http.StatusOK, fmt.Errorf("readyz %d: %s", code, body)
			})
			if !strings.Contains(s.output(), `msg=counting service=flowagent mode=netfilter`) {
				t.Errorf("no netfilter attach in the log:\n%s", s.output())
			}
			if ents, err := os.ReadDir(filepath.Join(bpffs, fmt.Sprintf("zonetoll-%d", i))); err != nil || len(ents) == 0 {
				t.Errorf("no maps pinned in the bpffs: %v", err)
			}
			if err := s.stop(t); err != nil {
				t.Errorf("flowagent did not stop cleanly: %v\n%s", err, s.output())
			}
		})
	}
}

// daemonSetCaps returns the capabilities the flowagent DaemonSet adds.
func daemonSetCaps(t *testing.T, dir string) []string {
	t.Helper()
	objs, err := Build(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "DaemonSet" {
			continue
		}
		c := &checker{}
		if err := c.addWorkload(o); err != nil {
			t.Fatal(err)
		}
		sc := c.workloads[0].template.Spec.Containers[0].SecurityContext
		if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Add) == 0 {
			t.Fatal("the flowagent DaemonSet adds no capabilities")
		}
		var caps []string
		for _, cp := range sc.Capabilities.Add {
			caps = append(caps, string(cp))
		}
		return caps
	}
	t.Fatalf("%s has no DaemonSet", dir)
	return nil
}

// labelledCleanly waits until the labeler serving its metrics at addr has put zone eu-1a and region
// eu-1 on pod shop/<pod>, and checks that it wrote with success and was never refused nor failed.
func labelledCleanly(t *testing.T, ctx context.Context, cs kubernetes.Interface, addr, pod string) {
	t.Helper()
	waitFor(t, ctx, 90*time.Second, "pod shop/"+pod+" labelled with its node's zone and region", func() (bool, error) {
		p, err := cs.CoreV1().Pods("shop").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return p.Labels["topology.kubernetes.io/zone"] == "eu-1a" && p.Labels["topology.kubernetes.io/region"] == "eu-1", nil
	})
	code, body, err := get(http.DefaultClient, "http://"+addr+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	if v := metricValue(body, `zonetoll_zonelabeler_label_writes_total{result="success"}`); v == "" || v == "0" {
		t.Errorf("label_writes_total{result=success} = %q, want at least 1", v)
	}
	for _, r := range []string{"forbidden", "error"} {
		if v := metricValue(body, `zonetoll_zonelabeler_label_writes_total{result="`+r+`"}`); v != "" && v != "0" {
			t.Errorf("label_writes_total{result=%s} = %s, want 0", r, v)
		}
	}
}
