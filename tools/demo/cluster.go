package demo

import (
	"context"
	"fmt"
	"path/filepath"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/testkit/testcluster"
	"github.com/zonetoll/zonetoll/tools/overlaycheck"
)

// ToolNamespace is where zonetoll's service accounts live (the services' default ZONETOLL_NAMESPACE).
const ToolNamespace = "zonetoll"

// Account is a service account's kubeconfig and token files.
type Account struct {
	Kubeconfig, TokenFile string
}

// populate creates the namespaces, service accounts, nodes, the Deployments' ReplicaSets and the pods of
// m through the API, and writes each account's kubeconfig and token into dir.
func populate(ctx context.Context, c *testcluster.Cluster, m *Model, repo, dir string) (map[string]Account, error) {
	for _, ns := range []string{ToolNamespace, m.AppNS} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	accounts := map[string]Account{}
	// Each service gets exactly what its deploy manifests grant.
	for _, name := range []string{"flowserver", "flowagent", "zonelabeler"} {
		rules, clusterRules, err := overlaycheck.Rules(filepath.Join(repo, "kustomize", "base", name))
		if err != nil {
			return nil, fmt.Errorf("reading the RBAC of %s's manifests: %w", name, err)
		}
		spec := testcluster.ServiceAccountSpec{Namespace: ToolNamespace, Name: name, Rules: rules, ClusterRules: clusterRules}
		spec.ExpirationSeconds = 24 * 3600
		sa, err := c.ServiceAccount(ctx, spec)
		if err != nil {
			return nil, err
		}
		a := Account{Kubeconfig: filepath.Join(dir, spec.Name+".kubeconfig"), TokenFile: filepath.Join(dir, spec.Name+".token")}
		if err := testcluster.WriteKubeconfig(a.Kubeconfig, sa.Config); err != nil {
			return nil, err
		}
		if err := writeFile(a.TokenFile, sa.Token+"\n"); err != nil {
			return nil, err
		}
		accounts[spec.Name] = a
	}
	for _, n := range m.Nodes {
		if _, err := c.CreateNode(ctx, testcluster.NodeSpec{Name: n.Name, Zone: n.Zone, Region: m.Region,
			InternalIPs: []string{n.IPv4.String(), n.IPv6.String()}}); err != nil {
			return nil, err
		}
	}
	yes := true
	made := map[string]bool{}
	for _, p := range m.Pods {
		if p.OwnerKind != "ReplicaSet" || made[p.OwnerName] {
			continue
		}
		made[p.OwnerName] = true
		labels := map[string]string{"app": p.Workload, "pod-template-hash": templateHash(p.Workload)}
		one := int32(1)
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.OwnerName, Labels: labels,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: p.Workload,
					UID: types.UID(fakeUID(p.Workload)), Controller: &yes}}},
			Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: p.Workload, Image: "registry.example/" + p.Workload + ":1"}}}}},
		}
		if _, err := c.Client.AppsV1().ReplicaSets(p.Namespace).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating replicaset %s: %w", p.OwnerName, err)
		}
	}
	for _, p := range m.Pods {
		spec := testcluster.PodSpec{Namespace: p.Namespace, Name: p.Name, NodeName: p.Node.Name,
			Labels: map[string]string{"app": p.OwnerName}, HostNetwork: p.HostNetwork,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: p.OwnerKind, Name: p.OwnerName,
				UID: types.UID(fakeUID(p.OwnerName)), Controller: &yes}}}
		if p.Kind == KindDeployment {
			spec.Labels = map[string]string{"app": p.Workload, "pod-template-hash": templateHash(p.Workload)}
		}
		if !p.HostNetwork {
			spec.IPs = []string{p.IPv4.String(), p.IPv6.String()}
		}
		if _, err := c.CreatePod(ctx, spec); err != nil {
			return nil, err
		}
	}
	return accounts, nil
}

// fakeUID is a stable UID for an owner object that no controller manages here.
func fakeUID(name string) string {
	h := templateHash(name + "uid")
	return fmt.Sprintf("00000000-0000-4000-8000-%012x", []byte(h)[:6])
}
