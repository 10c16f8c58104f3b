package overlaycheck

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// The messages of kustomize/base/zonelabeler/admissionpolicy.yaml, as the API server returns them.
const (
	msgSpec     = "zonelabeler may not change a pod's spec"
	msgLabels   = "zonelabeler may only change the pod labels topology.kubernetes.io/zone, topology.kubernetes.io/region, no other label"
	msgMeta     = "zonelabeler may not change a pod's annotations, finalizers or owner references"
	msgNotLabel = "zonelabeler may only update pod labels, not DELETE"
)

// TestZonelabelerAdmissionPolicy applies the labeler-only overlay for real (Namespace, ServiceAccount,
// RBAC, the ValidatingAdmissionPolicy and its binding, the Deployment) and then acts as the labeler's own
// identity, system:serviceaccount:zonetoll:zonelabeler with a token from the TokenRequest API and only
// the shipped RBAC: its label patch passes; a patch of the image, of the tolerations, of another label
// key or of an annotation is refused with the policy's message. Another identity with the same rights
// is unaffected. Finally the real zonelabeler binary, with that token, labels a pod and counts no refused
// write: the policy lets through what the labeler really sends.
func TestZonelabelerAdmissionPolicy(t *testing.T) {
	testcluster.Need(t)
	root := repo.RootT(t)
	bin := servicebuild.BinaryT(t, "zonelabeler")
	c := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	a := newApplier(t, c.Config)

	objs, err := Build(filesys.MakeFsOnDisk(), filepath.Join(root, "kustomize", "overlays", "labeler-only"))
	if err != nil {
		t.Fatal(err)
	}
	var policies int
	for _, o := range objs {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") {
			policies++
		}
	}
	if policies != 2 {
		t.Fatalf("labeler-only builds %d ValidatingAdmissionPolicy objects, want the policy and its binding", policies)
	}
	// The Namespace first: every namespaced object lands in it.
	for _, kind := range []string{"Namespace", ""} {
		for _, o := range objs {
			if (kind == "Namespace") == (o.GetKind() == "Namespace") {
				if err := a.apply(ctx, o, false); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if _, err := c.CreateNamespace(ctx, "shop"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: "n1", Zone: "eu-1a", Region: "eu-1", InternalIPs: []string{"198.18.0.1"}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web-1", "web-2"} {
		if _, err := c.CreatePod(ctx, testcluster.PodSpec{Namespace: "shop", Name: name, NodeName: "n1"}); err != nil {
			t.Fatal(err)
		}
	}

	// The labeler's own identity: a token of the ServiceAccount the overlay created, so what it may do is
	// exactly what the shipped ClusterRole grants.
	labeler := tokenClient(t, c, "zonetoll", "zonelabeler")
	// JSON merge patches for metadata (as the labeler sends), JSON patches for the spec: a pod update
	// the API server's own validation refuses (a merge patch replaces whole lists) never reaches the
	// policy, so the spec patches are ones a pod update may make.
	patch := func(cs kubernetes.Interface, name, body string, dryRun bool) error {
		opts := metav1.PatchOptions{FieldManager: "zonelabeler"}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		pt := types.MergePatchType
		if strings.HasPrefix(body, "[") {
			pt = types.JSONPatchType
		}
		_, err := cs.CoreV1().Pods("shop").Patch(ctx, name, pt, []byte(body), opts)
		return err
	}
	imagePatch := `[{"op":"replace","path":"/spec/containers/0/image","value":"registry.example/evil:1"}]`
	tolerationPatch := `[{"op":"add","path":"/spec/tolerations/-","value":{"operator":"Exists"}}]`
	// The API server compiles the policy and sees its binding through informers: wait (with a dry-run,
	// which passes admission but changes nothing) until it is in force.
	waitFor(t, ctx, 60*time.Second, "the policy refusing the labeler's image patch", func() (bool, error) {
		err := patch(labeler, "web-1", imagePatch, true)
		return err != nil && strings.Contains(err.Error(), msgSpec), err
	})

	refused := []struct{ name, body, want string }{
		{"image", imagePatch, msgSpec},
		{"toleration", tolerationPatch, msgSpec},
		{"another label key", `{"metadata":{"labels":{"app":"evil"}}}`, msgLabels},
		{"zone label and another key together", `{"metadata":{"labels":{"topology.kubernetes.io/zone":"eu-1a","app":"evil"}}}`, msgLabels},
		{"removing another label", `{"metadata":{"labels":{"app.kubernetes.io/name":null}}}`, msgLabels},
		{"annotation", `{"metadata":{"annotations":{"zonetoll.io/x":"y"}}}`, msgMeta},
		{"finalizer", `{"metadata":{"finalizers":["zonetoll.io/hold"]}}`, msgMeta},
	}
	// A pod label the labeler must not remove.
	if err := patch(c.Client, "web-1", `{"metadata":{"labels":{"app.kubernetes.io/name":"web"}}}`, false); err != nil {
		t.Fatal(err)
	}
	for _, r := range refused {
		t.Run("labeler refused/"+r.name, func(t *testing.T) {
			err := patch(labeler, "web-1", r.body, false)
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), r.want) {
				t.Fatalf("patch %s as the labeler: err = %v, want 403 with %q", r.body, err, r.want)
			}
		})
	}
	pod, err := c.Client.CoreV1().Pods("shop").Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tol := range pod.Spec.Tolerations {
		if tol.Key == "" && tol.Operator == "Exists" {
			t.Errorf("a refused patch added the toleration %+v", tol)
		}
	}
	if pod.Spec.Containers[0].Image == "registry.example/evil:1" || pod.Labels["app"] != "" ||
		pod.Labels["app.kubernetes.io/name"] != "web" || len(pod.Annotations) > 0 || len(pod.Finalizers) > 0 {
		t.Fatalf("a refused patch changed the pod: %+v", pod)
	}

	t.Run("labeler's label patch passes", func(t *testing.T) {
		if err := patch(labeler, "web-1", `{"metadata":{"labels":{"topology.kubernetes.io/zone":"eu-1a","topology.kubernetes.io/region":"eu-1"}}}`, false); err != nil {
			t.Fatalf("the labeler's own label patch: %v", err)
		}
		// Correcting a wrong value is a label write too.
		if err := patch(labeler, "web-1", `{"metadata":{"labels":{"topology.kubernetes.io/zone":"eu-1b"}}}`, false); err != nil {
			t.Fatalf("correcting the zone label: %v", err)
		}
		p, err := c.Client.CoreV1().Pods("shop").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Labels["topology.kubernetes.io/zone"] != "eu-1b" || p.Labels["topology.kubernetes.io/region"] != "eu-1" || p.Labels["app.kubernetes.io/name"] != "web" {
			t.Errorf("labels after the labeler's patches = %v", p.Labels)
		}
	})

	// With more RBAC than shipped (an operator's mistake, or an escalation), the policy still holds:
	// a delete by the labeler is refused by the policy, not by RBAC.
	t.Run("labeler refused/delete even with delete RBAC", func(t *testing.T) {
		grant(t, c, "zonetoll-test-labeler-delete", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: "zonetoll", Name: "zonelabeler"},
			rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"delete"}})
		var last error
		waitFor(t, ctx, 30*time.Second, "RBAC granting delete, the policy refusing it", func() (bool, error) {
			last = labeler.CoreV1().Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}})
			return last != nil && strings.Contains(last.Error(), msgNotLabel), last
		})
		if !apierrors.IsForbidden(last) {
			t.Errorf("delete as the labeler: %v, want 403", last)
		}
	})

	// Another identity is not matched: a ServiceAccount of the same name in another namespace, with the
	// same ClusterRole, patches the image, and so does the admin.
	t.Run("another identity is unaffected", func(t *testing.T) {
		if _, err := c.CreateNamespace(ctx, "other"); err != nil {
			t.Fatal(err)
		}
		_, clusterRules := rulesOf(t, filepath.Join(root, "kustomize", "base", "zonelabeler"))
		other, err := c.ServiceAccount(ctx, testcluster.ServiceAccountSpec{Namespace: "other", Name: "zonelabeler", ClusterRules: clusterRules})
		if err != nil {
			t.Fatal(err)
		}
		if err := patch(other.Client, "web-1", imagePatch, false); err != nil {
			t.Errorf("image patch by %s: %v", other.Username, err)
		}
		if err := patch(other.Client, "web-1", `{"metadata":{"labels":{"app":"other"}}}`, false); err != nil {
			t.Errorf("label patch by %s: %v", other.Username, err)
		}
		if err := patch(c.Client, "web-1", tolerationPatch, false); err != nil {
			t.Errorf("toleration patch by the admin: %v", err)
		}
	})

	// The real labeler, with the same token and only the shipped RBAC, under the policy.
	t.Run("real zonelabeler labels under the policy", func(t *testing.T) {
		s := startService(t, []string{bin, "run"}, []string{
			"KUBECONFIG=" + testcluster.KubeconfigT(t, labeler.cfg),
			"ZONETOLL_LEADER_ELECTION_NAMESPACE=zonetoll",
			"ZONETOLL_LEADER_ELECTION_IDENTITY=zonelabeler-policy-test",
		})
		addr := s.httpAddr(t)
		labelledCleanly(t, ctx, c.Client, addr, "web-2")
	})
}

// labelerClient is a clientset authenticated as one ServiceAccount, with its config.
type labelerClient struct {
	kubernetes.Interface
	cfg *rest.Config
}

// tokenClient asks the TokenRequest API for a token of an existing ServiceAccount (as the kubelet
// does for a pod) and returns a client that uses only that token.
func tokenClient(t *testing.T, c *testcluster.Cluster, ns, name string) labelerClient {
	t.Helper()
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	cfg := rest.AnonymousClientConfig(c.Config)
	cfg.BearerToken = tr.Status.Token
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return labelerClient{Interface: cs, cfg: cfg}
}

// grant binds a ClusterRole with one rule to a subject.
func grant(t *testing.T, c *testcluster.Cluster, name string, subject rbacv1.Subject, rule rbacv1.PolicyRule) {
	t.Helper()
	ctx := t.Context()
	if _, err := c.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: []rbacv1.PolicyRule{rule}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}, Subjects: []rbacv1.Subject{subject}}
	if _, err := c.Client.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
