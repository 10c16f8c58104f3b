package overlaycheck

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/testkit/reportpost"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
	"github.com/zonetoll/zonetoll/testkit/tlstest"
)

// manifestEnv is the env of the flowserver container of the aws overlay's first zone, with the
// downward-API values (ZONETOLL_NAMESPACE, ZONETOLL_ZONE from the pods' zone label) resolved as the kubelet
// would, the audience of the agents' projected token and the namespace the agents run in. Files the env
// names in the mounted TLS Secret are written to a directory of the test, as the kubelet would mount
// what cert-manager issued: a certificate for the Certificate's names signed by a CA of the test, which
// client (for the server's HTTPS) trusts.
func manifestEnv(t *testing.T, root string) (env []string, audience, agentNamespace string, client *http.Client) {
	t.Helper()
	objs, err := Build(filesys.MakeFsOnDisk(), filepath.Join(root, "kustomize", "overlays", "aws"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch {
		case o.GetKind() == "Deployment" && o.GetLabels()[LabelName] == "flowserver" && env == nil:
			d, err := convert[appsv1.Deployment](o)
			if err != nil {
				t.Fatal(err)
			}
			secretDir, c := mountTLSSecret(t, objs, d)
			client = c
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				if e.Name == tlsCertSetting || e.Name == tlsKeySetting {
					if !strings.HasPrefix(e.Value, tlsMountPath+"/") {
						t.Fatalf("flowserver env %s=%s is not in the TLS Secret's mount %s", e.Name, e.Value, tlsMountPath)
					}
					env = append(env, e.Name+"="+filepath.Join(secretDir, strings.TrimPrefix(e.Value, tlsMountPath+"/")))
					continue
				}
				var label string
				var isLabel bool
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					label, isLabel = labelFieldPath(e.ValueFrom.FieldRef.FieldPath)
				}
				switch {
				case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
					env = append(env, e.Name+"="+o.GetNamespace())
				case isLabel:
					v, ok := d.Spec.Template.Labels[label]
					if !ok {
						t.Fatalf("flowserver env %s comes from the pod label %s, which its template lacks", e.Name, label)
					}
					env = append(env, e.Name+"="+v)
				case e.ValueFrom == nil:
					env = append(env, e.Name+"="+e.Value)
				default:
					t.Fatalf("flowserver env %s comes from a source this test does not resolve", e.Name)
				}
			}
		case o.GetKind() == "DaemonSet" && o.GetName() == "flowagent":
			agentNamespace = o.GetNamespace()
			d, err := convert[appsv1.DaemonSet](o)
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Projected == nil {
					continue
				}
				for _, s := range v.Projected.Sources {
					if s.ServiceAccountToken != nil {
						audience = s.ServiceAccountToken.Audience
					}
				}
			}
		}
	}
	if env == nil || audience == "" {
		t.Fatalf("the aws overlay has no flowserver env (%v) or no projected agent token audience (%q)", env, audience)
	}
	return env, audience, agentNamespace, client
}

// tlsMountPath is where base/flowserver/zone mounts the zone's certificate Secret.
const tlsMountPath = "/etc/zonetoll/tls"

// mountTLSSecret writes what the Secret the flowserver mounts at tlsMountPath would hold once
// cert-manager issued its Certificate (tls.crt, tls.key, ca.crt; a test CA, the Certificate's DNS names)
// and returns the directory and a client that trusts the CA.
func mountTLSSecret(t *testing.T, objs []*unstructured.Unstructured, d *appsv1.Deployment) (string, *http.Client) {
	t.Helper()
	var secret string
	for _, m := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		if m.MountPath != tlsMountPath {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				secret = v.Secret.SecretName
			}
		}
	}
	var names []string
	for _, o := range objs {
		if s, _, _ := unstructured.NestedString(o.Object, "spec", "secretName"); o.GetKind() == "Certificate" && s == secret && secret != "" {
			names, _, _ = unstructured.NestedStringSlice(o.Object, "spec", "dnsNames")
		}
	}
	if len(names) == 0 {
		t.Fatalf("%s mounts no Secret at %s that a Certificate with DNS names writes", d.Name, tlsMountPath)
	}
	ca := tlstest.NewCA(t, "zonetoll-ca")
	crt, key := ca.ServerPEM(t, names...)
	dir := t.TempDir()
	for name, data := range map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": ca.PEM()} {
		tlstest.WriteFile(t, filepath.Join(dir, name), data)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return dir, &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// TestFlowserverRBAC runs the real flowserver with a token bound to exactly the ClusterRole of
// kustomize/base/flowserver and the env of a zone's Deployment: it must become ready (its six informers
// list and watch) and accept a report sent with a token of the agent's audience, taken from the
// DaemonSet's projected token (TokenReview create), and count it between the right workloads and zones
// and to the destination's Service. Without the tokenreviews rule the same report must be refused, and
// without the services or endpointslices rule the server must never become ready, so each check can fail.
func TestFlowserverRBAC(t *testing.T) {
	testcluster.Need(t)
	root := repo.RootT(t)
	_, clusterRules := rulesOf(t, filepath.Join(root, "kustomize", "base", "flowserver"))
	env, audience, agentNS, client := manifestEnv(t, root)
	// The zone's Role (get and update of its dedupe ConfigMap) comes from the zone's folder.
	var serverZone string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "ZONETOLL_ZONE="); ok {
			serverZone = v
		}
	}
	zoneRules, _ := rulesOf(t, filepath.Join(root, "kustomize", "overlays", "aws", "zones", serverZone))
	if len(zoneRules) != 1 || len(zoneRules[0].ResourceNames) != 1 {
		t.Fatalf("zone %s: want one Role rule naming its dedupe ConfigMap, got %v", serverZone, zoneRules)
	}
	marksConfigMap := zoneRules[0].ResourceNames[0]
	// The tests stop the server without waiting for a last scrape.
	env = append(env, "ZONETOLL_SHUTDOWN_METRICS_GRACE=0s")
	get := func(url string) (int, string, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	bin := servicebuild.BinaryT(t, "flowserver")
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	for _, ns := range []string{"zonetoll", agentNS, "shop"} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	// As the zone's folder ships it: empty.
	if _, err := c.Client.CoreV1().ConfigMaps("zonetoll").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: marksConfigMap}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []testcluster.NodeSpec{
		{Name: "n1", Zone: "eu-1a", Region: "eu-1", InternalIPs: []string{"198.18.0.1"}},
		{Name: "n2", Zone: "eu-1b", Region: "eu-1", InternalIPs: []string{"198.18.0.2"}},
	} {
		if _, err := c.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []testcluster.PodSpec{
		{Namespace: "shop", Name: "web-1", NodeName: "n1", IPs: []string{"198.18.1.1"}},
		{Namespace: "shop", Name: "api-1", NodeName: "n2", IPs: []string{"198.18.1.2"}},
	} {
		if _, err := c.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// api-1 backs the Service api; there is no EndpointSlice controller, so the test writes the slice.
	if _, err := c.Client.CoreV1().Services("shop").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	zone := "eu-1b"
	if _, err := c.Client.DiscoveryV1().EndpointSlices("shop").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "api-1", Labels: map[string]string{discoveryv1.LabelServiceName: "api"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.18.1.2"}, Zone: &zone}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The agent's account, in the agent's namespace of the build, has no rules: its token is only ever
	// reviewed.
	agent, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: agentNS, Name: "flowagent", Audiences: []string{audience}})
	if err != nil {
		t.Fatal(err)
	}
	newReport := func() *report.Report {
		now := time.Now()
		r := &report.Report{Node: "n1", Sequence: 1, WindowStart: now.Add(-10 * time.Second), WindowEnd: now, Flows: []report.Flow{{
			Src: report.AddrFrom(netip.MustParseAddr("198.18.1.1")), Dst: report.AddrFrom(netip.MustParseAddr("198.18.1.2")),
			Bytes: 4242, Packets: 3,
		}}}
		_, _ = rand.Read(r.BootID[:])
		return r
	}
	run := func(t *testing.T, account string, rules []rbacv1.PolicyRule) (*service, string) {
		sa, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "zonetoll", Name: account, ClusterRules: rules, Rules: zoneRules})
		if err != nil {
			t.Fatal(err)
		}
		s := startService(t, []string{bin, "run"}, append([]string{"KUBECONFIG=" + testcluster.KubeconfigT(t, sa.Config)}, env...))
		addr := s.httpAddr(t)
		waitFor(t, ctx, 90*time.Second, "flowserver /readyz 200 (informers synced)", func() (bool, error) {
			code, _, err := get("https://" + addr + "/readyz")
			return code == http.StatusOK, err
		})
		return s, addr
	}

	t.Run("base rules suffice", func(t *testing.T) {
		_, addr := run(t, "flowserver", clusterRules)
		if resp := reportpost.PostWith(t, client, "https://"+addr, agent.Token, reportpost.Gzip(t, newReport()), "gzip"); resp.Status != http.StatusOK || strings.TrimSpace(resp.Body) != "applied" {
			t.Fatalf("report: %d %q, want 200 applied", resp.Status, resp.Body)
		}
		code, body, err := get("https://" + addr + "/metrics")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /metrics: %d %v", code, err)
		}
		series := `zonetoll_traffic_bytes_total{dst_kind="pod",dst_namespace="shop",dst_workload="api-1",dst_zone="eu-1b",src_kind="pod",src_namespace="shop",src_workload="web-1",src_zone="eu-1a"}`
		if v := metricValue(body, series); v != "4242" {
			t.Errorf("%s = %q, want 4242", series, v)
		}
		for series, want := range map[string]string{
			`zonetoll_service_traffic_bytes_total{direction="request",dst_zone="eu-1b",namespace="shop",service="api",src_kind="pod",src_namespace="shop",src_workload="web-1",src_zone="eu-1a"}`: "4242",
			`zonetoll_service_ready_endpoints{namespace="shop",service="api",zone="eu-1b"}`:                                                                                                       "1",
		} {
			if v := metricValue(body, series); v != want {
				t.Errorf("%s = %q, want %s", series, v, want)
			}
		}
		// The version is read in the background after start (/version and the core/v1 OpenAPI schema,
		// which every authenticated user may read).
		waitFor(t, ctx, 90*time.Second, "zonetoll_kubernetes_info on /metrics", func() (bool, error) {
			_, body, err := get("https://" + addr + "/metrics")
			return strings.Contains(body, "\nzonetoll_kubernetes_info{"), err
		})
		// The applied report's mark reaches the zone's ConfigMap (the periodic save, every 10 s): the
		// Role's get and update suffice.
		waitFor(t, ctx, 90*time.Second, "the dedupe marks in ConfigMap "+marksConfigMap, func() (bool, error) {
			cm, err := c.Client.CoreV1().ConfigMaps("zonetoll").Get(ctx, marksConfigMap, metav1.GetOptions{})
			return err == nil && strings.Contains(cm.Data["marks.json"], `"n1"`), err
		})
		// A token for the API server's own audience is refused: the audience setting is in force.
		other, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "zonetoll", Name: "flowagent-apiserver-audience"})
		if err != nil {
			t.Fatal(err)
		}
		if resp := reportpost.PostWith(t, client, "https://"+addr, other.Token, reportpost.Gzip(t, newReport()), "gzip"); resp.Status != http.StatusUnauthorized {
			t.Errorf("report with a token of the API server's audience: %d %q, want 401", resp.Status, resp.Body)
		}
	})

	t.Run("without tokenreviews the report is refused", func(t *testing.T) {
		var cut []rbacv1.PolicyRule
		for _, r := range clusterRules {
			if !(len(r.Resources) == 1 && r.Resources[0] == "tokenreviews") {
				cut = append(cut, r)
			}
		}
		if len(cut) != len(clusterRules)-1 {
			t.Fatalf("the base ClusterRole has no rule of its own for tokenreviews: %v", clusterRules)
		}
		_, addr := run(t, "flowserver-no-review", cut)
		if resp := reportpost.PostWith(t, client, "https://"+addr, agent.Token, reportpost.Gzip(t, newReport()), "gzip"); resp.Status == http.StatusOK {
			t.Errorf("report accepted (%q) although the server may not create TokenReviews", resp.Body)
		}
	})

	// The marks are read before the server takes reports: without the zone's Role it never does.
	t.Run("without the dedupe ConfigMap rule the server is never ready", func(t *testing.T) {
		sa, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "zonetoll", Name: "flowserver-no-marks", ClusterRules: clusterRules})
		if err != nil {
			t.Fatal(err)
		}
		s := startService(t, []string{bin, "run"}, append([]string{"KUBECONFIG=" + testcluster.KubeconfigT(t, sa.Config)}, env...))
		addr := s.httpAddr(t)
		waitFor(t, ctx, 90*time.Second, "the refused ConfigMap read in the log", func() (bool, error) {
			out := s.output()
			return strings.Contains(out, "loading dedupe marks") && strings.Contains(out, "forbidden"), nil
		})
		code, body, err := get("https://" + addr + "/readyz")
		if err != nil || code == http.StatusOK || !strings.Contains(body, "dedupe marks have not been read") {
			t.Errorf("/readyz without the Role: %d %q (%v), want not ready naming the dedupe marks", code, body, err)
		}
		if resp := reportpost.PostWith(t, client, "https://"+addr, agent.Token, reportpost.Gzip(t, newReport()), "gzip"); resp.Status != http.StatusServiceUnavailable {
			t.Errorf("report without the Role: %d %q, want 503 (not ready)", resp.Status, resp.Body)
		}
	})

	// The Service caches are part of readiness: without either rule the server lists everything else,
	// is refused on the one, and never reports ready nor applies a report.
	for _, res := range []struct{ resource, forbidden string }{
		{"services", "services is forbidden"},
		{"endpointslices", "endpointslices.discovery.k8s.io is forbidden"},
	} {
		t.Run("without "+res.resource+" the server is never ready", func(t *testing.T) {
			var cut []rbacv1.PolicyRule
			removed := false
			for _, r := range clusterRules {
				r = *r.DeepCopy()
				for i, name := range r.Resources {
					if name == res.resource {
						r.Resources = append(r.Resources[:i], r.Resources[i+1:]...)
						removed = true
						break
					}
				}
				if len(r.Resources) > 0 {
					cut = append(cut, r)
				}
			}
			if !removed {
				t.Fatalf("the base ClusterRole grants no %s: %v", res.resource, clusterRules)
			}
			sa, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "zonetoll", Name: "flowserver-no-" + res.resource, ClusterRules: cut, Rules: zoneRules})
			if err != nil {
				t.Fatal(err)
			}
			s := startService(t, []string{bin, "run"}, append([]string{"KUBECONFIG=" + testcluster.KubeconfigT(t, sa.Config)}, env...))
			addr := s.httpAddr(t)
			// The API server's refusal, logged by the informer, is the proof that the rule is needed; the
			// readiness answer after it shows the pod and node caches synced and the Service ones not.
			waitFor(t, ctx, 90*time.Second, "the informer's "+res.forbidden+" in the log", func() (bool, error) {
				return strings.Contains(s.output(), res.forbidden), nil
			})
			code, body, err := get("https://" + addr + "/readyz")
			if err != nil || code == http.StatusOK || !strings.Contains(body, "Service and EndpointSlice caches have not synced") {
				t.Errorf("/readyz without %s: %d %q (%v), want not ready naming the Service caches", res.resource, code, body, err)
			}
			if resp := reportpost.PostWith(t, client, "https://"+addr, agent.Token, reportpost.Gzip(t, newReport()), "gzip"); resp.Status != http.StatusServiceUnavailable {
				t.Errorf("report without %s: %d %q, want 503 (not ready)", res.resource, resp.Status, resp.Body)
			}
		})
	}
}
