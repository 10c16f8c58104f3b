// Package binding ties an authenticated agent to one pod on one node. A pod-bound service-account token
// (the one the kubelet mounts) names its pod, the pod's UID and, on Kubernetes 1.30+, its node; the
// flowserver checks them against its own pod informer on every report, so a report counts only for the
// node the sending pod runs on. Tokens bound to no pod (kubectl create token, a legacy Secret) name
// no node at all and are refused unless the operator allows them.
package binding

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/auth"
)

// Refusal reasons, each a reason label of zonetoll_flowserver_reports_total.
const (
	// ReasonUnbound: the token is bound to no pod, and unbound tokens are not allowed.
	ReasonUnbound = "unbound_token"
	// ReasonPodNotSeen: the token's pod is not in the pod cache (yet), or not on a node there yet.
	// Retryable: a brand-new agent's pod reaches the informer moments after the API server has it.
	ReasonPodNotSeen = "pod_not_seen"
	// ReasonPodMismatch: the cached pod of that name has another UID (the token's pod was replaced) or
	// runs as another service account.
	ReasonPodMismatch = "pod_mismatch"
	// ReasonPodTerminated: the token's pod has finished (Succeeded, Failed) or is past its deletion
	// grace period.
	ReasonPodTerminated = "pod_terminated"
	// ReasonNodeMismatch: the token's node is not the pod's node or not the node the report names, or
	// the node of that name has another UID than the token's.
	ReasonNodeMismatch = "node_mismatch"
)

// Reasons lists every refusal reason, for metrics that want each label value from the start.
func Reasons() []string {
	return []string{ReasonUnbound, ReasonPodNotSeen, ReasonPodMismatch, ReasonPodTerminated, ReasonNodeMismatch}
}

// Refusal is why a caller may not report (now). Retry says the cause may pass by itself (the
// informer catching up), so the caller should retry rather than be refused.
type Refusal struct {
	Reason string
	Retry  bool
	msg    string
}

func (r *Refusal) Error() string { return r.msg }

func refuse(reason, format string, args ...any) *Refusal {
	return &Refusal{Reason: reason, Retry: reason == ReasonPodNotSeen, msg: fmt.Sprintf(format, args...)}
}

// Cluster is the flowserver's cached view of pods and nodes (resolve.Informers is one). Objects it
// returns are shared and must not be modified.
type Cluster interface {
	Pod(namespace, name string) (*corev1.Pod, bool)
	Node(name string) (*corev1.Node, bool)
}

// Options configure a Binder.
type Options struct {
	// AllowUnbound accepts tokens bound to no pod (ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS): such a caller
	// is bound to no node, and its reports may name any node.
	AllowUnbound bool
	// Now is the clock that decides whether a pod's deletion grace period is over; nil is time.Now.
	Now func() time.Time
}

// Binder checks identities against the cluster.
type Binder struct {
	cluster Cluster
	opts    Options
}

// New returns a Binder over cluster.
func New(cluster Cluster, opts Options) *Binder {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Binder{cluster: cluster, opts: opts}
}

// Bind returns the node id may report for, "" for an allowed unbound token (any node, the sender's
// word), or a *Refusal. It reads only the caches, so it is cheap enough for every request; the
// TokenReview behind id may be a minute old, and the cache is what says the pod is still there.
func (b *Binder) Bind(id auth.Identity) (string, error) {
	if id.Pod == "" {
		if b.opts.AllowUnbound {
			return "", nil
		}
		return "", refuse(ReasonUnbound, "the token of %s is not bound to a pod, so it names no node; send the agent pod's own projected token, or set ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS=true to accept such tokens (any holder may then report as any node)", id.Username)
	}
	ns := id.Namespace()
	pod, ok := b.cluster.Pod(ns, id.Pod)
	if !ok {
		return "", refuse(ReasonPodNotSeen, "the token is bound to pod %s/%s, which this server's pod cache does not have (yet); retry", ns, id.Pod)
	}
	if id.PodUID != "" && string(pod.UID) != id.PodUID {
		return "", refuse(ReasonPodMismatch, "the token is bound to pod %s/%s with UID %s, but that pod now has UID %s: the token's pod was replaced", ns, id.Pod, id.PodUID, pod.UID)
	}
	if sa := pod.Spec.ServiceAccountName; sa != id.ServiceAccount() {
		return "", refuse(ReasonPodMismatch, "the token of %s is bound to pod %s/%s, which runs as service account %q", id.Username, ns, id.Pod, sa)
	}
	if p := pod.Status.Phase; p == corev1.PodSucceeded || p == corev1.PodFailed {
		return "", refuse(ReasonPodTerminated, "the token is bound to pod %s/%s, which has finished (%s)", ns, id.Pod, p)
	}
	if dt := pod.DeletionTimestamp; dt != nil && dt.Time.Before(b.opts.Now()) {
		return "", refuse(ReasonPodTerminated, "the token is bound to pod %s/%s, deleted and past its grace period (%s)", ns, id.Pod, dt.Time.UTC().Format(time.RFC3339))
	}
	node := pod.Spec.NodeName
	if node == "" {
		return "", refuse(ReasonPodNotSeen, "the token is bound to pod %s/%s, which this server's pod cache has on no node (yet); retry", ns, id.Pod)
	}
	if id.Node != "" && id.Node != node {
		return "", refuse(ReasonNodeMismatch, "the token names node %q, but its pod %s/%s runs on node %q", id.Node, ns, id.Pod, node)
	}
	if id.NodeUID != "" {
		// A node deleted and recreated under its name is another node: its old pods' tokens are void.
		if n, ok := b.cluster.Node(node); ok && string(n.UID) != id.NodeUID {
			return "", refuse(ReasonNodeMismatch, "the token is bound to node %q with UID %s, but that node now has UID %s", node, id.NodeUID, n.UID)
		}
	}
	return node, nil
}
