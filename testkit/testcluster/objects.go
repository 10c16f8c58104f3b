package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Well-known labels set on nodes.
const (
	LabelZone     = "topology.kubernetes.io/zone"
	LabelRegion   = "topology.kubernetes.io/region"
	LabelHostname = "kubernetes.io/hostname"
)

// FieldManager is used for every write the helpers make.
const FieldManager = "zonetoll-testcluster"

// PauseImage is the image of helper pods; nothing ever pulls it.
const PauseImage = "registry.k8s.io/pause:3.10"

// NodeSpec describes a node to create. There is no kubelet: the node is only
// an API object, with a Ready condition so code filtering on it works.
type NodeSpec struct {
	Name   string
	Zone   string // topology.kubernetes.io/zone, omitted if empty
	Region string // topology.kubernetes.io/region, omitted if empty
	// InternalIPs are the node's InternalIP addresses (one per family).
	InternalIPs []string
	Labels      map[string]string
}

// CreateNode creates a node with its labels and InternalIP addresses.
func (c *Cluster) CreateNode(ctx context.Context, spec NodeSpec) (*corev1.Node, error) {
	return CreateNode(ctx, c.Client, spec)
}

// CreateNode creates a node through any client.
func CreateNode(ctx context.Context, cs kubernetes.Interface, spec NodeSpec) (*corev1.Node, error) {
	labels := map[string]string{LabelHostname: spec.Name}
	if spec.Zone != "" {
		labels[LabelZone] = spec.Zone
	}
	if spec.Region != "" {
		labels[LabelRegion] = spec.Region
	}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: spec.Name, Labels: labels}}
	created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil {
		return nil, fmt.Errorf("creating node %s: %w", spec.Name, err)
	}
	now := metav1.Now()
	status := corev1.NodeStatus{
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: spec.Name}},
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "zonetoll testcluster node (no kubelet)", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
	}
	for _, ip := range spec.InternalIPs {
		status.Addresses = append(status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, fmt.Errorf("encoding status of node %s: %w", spec.Name, err)
	}
	updated, err := cs.CoreV1().Nodes().Patch(ctx, created.Name, types.StrategicMergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager}, "status")
	if err != nil {
		return nil, fmt.Errorf("setting status of node %s: %w", spec.Name, err)
	}
	return updated, nil
}

// PodSpec describes a pod bound to a node and already running.
type PodSpec struct {
	Namespace string
	Name      string
	NodeName  string
	// IPs are status.podIPs (the first is status.podIP). For a HostNetwork
	// pod without IPs, the node's InternalIPs are used.
	IPs         []string
	HostNetwork bool
	Labels      map[string]string
	// OwnerReferences lets tests model pods of Deployments, DaemonSets, ...
	OwnerReferences []metav1.OwnerReference
	// Phase defaults to Running.
	Phase corev1.PodPhase
}

// CreatePod creates a pod bound to spec.NodeName and sets its IPs, phase and
// Ready condition through the status subresource, as a kubelet would.
func (c *Cluster) CreatePod(ctx context.Context, spec PodSpec) (*corev1.Pod, error) {
	return CreatePod(ctx, c.Client, spec)
}

// CreatePod creates a running pod through any client.
func CreatePod(ctx context.Context, cs kubernetes.Interface, spec PodSpec) (*corev1.Pod, error) {
	if spec.Namespace == "" || spec.Name == "" {
		return nil, errors.New("creating pod: namespace and name are required")
	}
	var hostIPs []string
	if spec.NodeName != "" {
		node, err := cs.CoreV1().Nodes().Get(ctx, spec.NodeName, metav1.GetOptions{})
		switch {
		case err == nil:
			hostIPs = internalIPs(node)
		case spec.HostNetwork:
			return nil, fmt.Errorf("creating host-network pod %s/%s: reading node: %w", spec.Namespace, spec.Name, err)
		}
	}
	return createPod(ctx, cs, spec, hostIPs)
}

// createPod creates a running pod whose node has hostIPs.
func createPod(ctx context.Context, cs kubernetes.Interface, spec PodSpec, hostIPs []string) (*corev1.Pod, error) {
	if spec.HostNetwork && len(spec.IPs) == 0 && len(hostIPs) == 0 {
		return nil, fmt.Errorf("creating host-network pod %s/%s: node %q has no InternalIP", spec.Namespace, spec.Name, spec.NodeName)
	}
	ips := spec.IPs
	if spec.HostNetwork && len(ips) == 0 {
		ips = hostIPs
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: spec.Namespace, Name: spec.Name, Labels: spec.Labels, OwnerReferences: spec.OwnerReferences,
		},
		Spec: corev1.PodSpec{
			NodeName:                      spec.NodeName,
			HostNetwork:                   spec.HostNetwork,
			Containers:                    []corev1.Container{{Name: "main", Image: PauseImage}},
			TerminationGracePeriodSeconds: new(int64),
		},
	}
	created, err := cs.CoreV1().Pods(spec.Namespace).Create(ctx, pod, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil {
		return nil, fmt.Errorf("creating pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	phase := spec.Phase
	if phase == "" {
		phase = corev1.PodRunning
	}
	status := map[string]any{"phase": phase}
	if phase == corev1.PodRunning {
		now := metav1.Now()
		status["startTime"] = now
		status["conditions"] = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
	}
	if len(ips) > 0 {
		status["podIP"] = ips[0]
		status["podIPs"] = ipList(ips)
	}
	if len(hostIPs) > 0 {
		status["hostIP"] = hostIPs[0]
		status["hostIPs"] = ipList(hostIPs)
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return nil, fmt.Errorf("encoding status of pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	updated, err := cs.CoreV1().Pods(spec.Namespace).Patch(ctx, created.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: FieldManager}, "status")
	if err != nil {
		return nil, fmt.Errorf("setting status of pod %s/%s: %w", spec.Namespace, spec.Name, err)
	}
	return updated, nil
}

// CreatePods creates many pods with workers in parallel and returns the
// first error (after the workers stop).
func (c *Cluster) CreatePods(ctx context.Context, specs []PodSpec, workers int) error {
	return CreatePods(ctx, c.Client, specs, workers)
}

// CreatePods creates many running pods through any client.
func CreatePods(ctx context.Context, cs kubernetes.Interface, specs []PodSpec, workers int) error {
	return CreatePodsPaced(ctx, cs, specs, workers, 0)
}

// CreatePodsPaced is CreatePods with pod i sent at start + i/rate seconds (rate > 0): the workers let
// one slow create not hold back the next, and when the API server cannot keep the pace, creates go
// out as fast as it allows. rate 0 sends them as fast as the workers take them.
func CreatePodsPaced(ctx context.Context, cs kubernetes.Interface, specs []PodSpec, workers, rate int) error {
	if workers < 1 {
		workers = 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan PodSpec)
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	// One node list instead of a node GET per pod.
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("creating pods: listing nodes: %w", err)
	}
	hostIPs := make(map[string][]string, len(nodes.Items))
	for i := range nodes.Items {
		hostIPs[nodes.Items[i].Name] = internalIPs(&nodes.Items[i])
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for spec := range next {
				if _, err := createPod(ctx, cs, spec, hostIPs[spec.NodeName]); err != nil {
					once.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
	var interval time.Duration
	if rate > 0 {
		interval = time.Second / time.Duration(rate)
	}
	start := time.Now()
feed:
	for i, s := range specs {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case next <- s:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return fmt.Errorf("creating pods: %w", ctx.Err())
	}
	return firstErr
}

// DeletePod deletes a pod for real: without a kubelet to confirm, a normal
// graceful delete would leave it Terminating forever.
func (c *Cluster) DeletePod(ctx context.Context, namespace, name string) error {
	return DeletePod(ctx, c.Client, namespace, name)
}

// DeletePod deletes a pod with grace period 0 through any client.
func DeletePod(ctx context.Context, cs kubernetes.Interface, namespace, name string) error {
	if err := cs.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		return fmt.Errorf("deleting pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// DeleteAllPods deletes every pod of a namespace with grace period 0.
func (c *Cluster) DeleteAllPods(ctx context.Context, namespace string) error {
	err := c.Client.CoreV1().Pods(namespace).DeleteCollection(ctx,
		metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("deleting pods of namespace %s: %w", namespace, err)
	}
	return nil
}

// CreateNamespace creates a namespace. Namespaces are never really deleted
// here (no namespace controller), so tests should use fresh names.
func (c *Cluster) CreateNamespace(ctx context.Context, name string) (*corev1.Namespace, error) {
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{FieldManager: FieldManager})
	if err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return ns, nil
}

// ServiceAccountSpec describes a service account and what it may do.
type ServiceAccountSpec struct {
	Namespace string
	Name      string
	// Rules are granted in Namespace through a Role and RoleBinding.
	Rules []rbacv1.PolicyRule
	// ClusterRules are granted cluster-wide through a ClusterRole and
	// ClusterRoleBinding.
	ClusterRules []rbacv1.PolicyRule
	// Audiences of the token; empty means the apiserver's (its issuer).
	Audiences []string
	// ExpirationSeconds of the token; default 3600, minimum 600.
	ExpirationSeconds int64
}

// ServiceAccountAccess is what a workload running as the account would have.
type ServiceAccountAccess struct {
	// Username is system:serviceaccount:<namespace>:<name>.
	Username string
	// Token is a bound token from the TokenRequest API.
	Token string
	// Config authenticates with Token only (no admin credentials).
	Config *rest.Config
	// Client is a clientset for Config.
	Client *kubernetes.Clientset
}

// ServiceAccount creates a service account with exactly the given rules and
// returns a token for it, so a test can run a service under the permissions
// its manifest grants. It returns once the apiserver's RBAC cache honours
// every rule, so the first request with the token is not refused by a race.
func (c *Cluster) ServiceAccount(ctx context.Context, spec ServiceAccountSpec) (*ServiceAccountAccess, error) {
	if spec.Namespace == "" || spec.Name == "" {
		return nil, errors.New("creating service account: namespace and name are required")
	}
	cs := c.Client
	create := metav1.CreateOptions{FieldManager: FieldManager}
	id := spec.Namespace + "/" + spec.Name
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name}}
	if _, err := cs.CoreV1().ServiceAccounts(spec.Namespace).Create(ctx, sa, create); err != nil {
		return nil, fmt.Errorf("creating service account %s: %w", id, err)
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: spec.Namespace, Name: spec.Name}}
	if len(spec.Rules) > 0 {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name}, Rules: spec.Rules}
		if _, err := cs.RbacV1().Roles(spec.Namespace).Create(ctx, role, create); err != nil {
			return nil, fmt.Errorf("creating role for service account %s: %w", id, err)
		}
		rb := &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: spec.Name},
			Subjects:   subject,
		}
		if _, err := cs.RbacV1().RoleBindings(spec.Namespace).Create(ctx, rb, create); err != nil {
			return nil, fmt.Errorf("creating role binding for service account %s: %w", id, err)
		}
	}
	if len(spec.ClusterRules) > 0 {
		name := "zonetoll-test:" + spec.Namespace + ":" + spec.Name
		cr := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: spec.ClusterRules}
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, cr, create); err != nil {
			return nil, fmt.Errorf("creating cluster role for service account %s: %w", id, err)
		}
		crb := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   subject,
		}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, create); err != nil {
			return nil, fmt.Errorf("creating cluster role binding for service account %s: %w", id, err)
		}
	}
	expiration := spec.ExpirationSeconds
	if expiration == 0 {
		expiration = 3600
	}
	tr, err := cs.CoreV1().ServiceAccounts(spec.Namespace).CreateToken(ctx, spec.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: spec.Audiences, ExpirationSeconds: &expiration},
	}, create)
	if err != nil {
		return nil, fmt.Errorf("requesting token for service account %s: %w", id, err)
	}
	access := &ServiceAccountAccess{
		Username: "system:serviceaccount:" + spec.Namespace + ":" + spec.Name,
		Token:    tr.Status.Token,
	}
	access.Config = rest.AnonymousClientConfig(c.Config)
	access.Config.BearerToken = tr.Status.Token
	if access.Client, err = kubernetes.NewForConfig(access.Config); err != nil {
		return nil, fmt.Errorf("creating clientset for service account %s: %w", id, err)
	}
	if err := c.waitForRules(ctx, access.Username, spec); err != nil {
		return nil, fmt.Errorf("waiting for RBAC of service account %s: %w", id, err)
	}
	return access, nil
}

// waitForRules asks the authorizer (SubjectAccessReview) about one request
// per verb and resource of every rule until all are allowed.
func (c *Cluster) waitForRules(ctx context.Context, user string, spec ServiceAccountSpec) error {
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:" + spec.Namespace, "system:authenticated"}
	var attrs []authorizationv1.SubjectAccessReviewSpec
	add := func(ns string, rules []rbacv1.PolicyRule) {
		for _, r := range rules {
			for _, verb := range r.Verbs {
				for _, path := range r.NonResourceURLs {
					attrs = append(attrs, authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups,
						NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb}})
				}
				for _, group := range r.APIGroups {
					for _, resource := range r.Resources {
						ra := authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: resource}
						if len(r.ResourceNames) > 0 {
							ra.Name = r.ResourceNames[0]
						}
						attrs = append(attrs, authorizationv1.SubjectAccessReviewSpec{User: user, Groups: groups, ResourceAttributes: &ra})
					}
				}
			}
		}
	}
	add(spec.Namespace, spec.Rules)
	add("", spec.ClusterRules)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, a := range attrs {
		var last *authorizationv1.SubjectAccessReview
		err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			sar, err := c.Client.AuthorizationV1().SubjectAccessReviews().Create(ctx,
				&authorizationv1.SubjectAccessReview{Spec: a}, metav1.CreateOptions{})
			if err != nil {
				return false, err
			}
			last = sar
			return sar.Status.Allowed, nil
		})
		if err != nil {
			reason := ""
			if last != nil {
				reason = fmt.Sprintf(" (last answer: allowed=%v reason=%q)", last.Status.Allowed, last.Status.Reason)
			}
			return fmt.Errorf("rule %+v not effective%s: %w", a, reason, err)
		}
	}
	return nil
}

func internalIPs(node *corev1.Node) []string {
	var ips []string
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ips = append(ips, a.Address)
		}
	}
	return ips
}

func ipList(ips []string) []map[string]string {
	out := make([]map[string]string, len(ips))
	for i, ip := range ips {
		out[i] = map[string]string{"ip": ip}
	}
	return out
}
