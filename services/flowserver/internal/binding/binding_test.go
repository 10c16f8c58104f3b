package binding

import (
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/auth"
)

// cache is the narrow stand-in for the pod and node informers, whose real path the cluster tests in
// internal/app cover.
type cache struct {
	pods  map[string]*corev1.Pod
	nodes map[string]*corev1.Node
}

func (c cache) Pod(namespace, name string) (*corev1.Pod, bool) {
	p, ok := c.pods[namespace+"/"+name]
	return p, ok
}

func (c cache) Node(name string) (*corev1.Node, bool) { n, ok := c.nodes[name]; return n, ok }

func TestBind(t *testing.T) {
	now := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	pod := func(name, uid, node, sa string, mod func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "zonetoll-agent", Name: name, UID: types.UID("u-" + uidOr(uid, name))},
			Spec:       corev1.PodSpec{NodeName: node, ServiceAccountName: sa},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning},
		}
		if mod != nil {
			mod(p)
		}
		return p
	}
	c := cache{
		pods: map[string]*corev1.Pod{},
		nodes: map[string]*corev1.Node{
			"n-a": {ObjectMeta: metav1.ObjectMeta{Name: "n-a", UID: "node-a"}},
			"n-b": {ObjectMeta: metav1.ObjectMeta{Name: "n-b", UID: "node-b"}},
		},
	}
	for _, p := range []*corev1.Pod{
		pod("agent-a", "", "n-a", "flowagent", nil),
		pod("agent-b", "", "n-b", "flowagent", nil),
		pod("other-sa", "", "n-a", "default", nil),
		pod("done", "", "n-a", "flowagent", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("failed", "", "n-a", "flowagent", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
		pod("deleting", "", "n-a", "flowagent", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: now.Add(20 * time.Second)} }),
		pod("deleted", "", "n-a", "flowagent", func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{Time: now.Add(-time.Second)} }),
		pod("unscheduled", "", "", "flowagent", nil),
	} {
		c.pods[p.Namespace+"/"+p.Name] = p
	}
	const user = "system:serviceaccount:zonetoll-agent:flowagent"
	bound := func(p, node string) auth.Identity {
		id := auth.Identity{Username: user, Pod: p, PodUID: "u-" + p, Node: node}
		if node != "" {
			id.NodeUID = "node-" + node[len(node)-1:]
		}
		return id
	}
	tests := []struct {
		name         string
		id           auth.Identity
		allowUnbound bool
		wantNode     string
		wantReason   string
	}{
		{"pod-bound with node extras", bound("agent-a", "n-a"), false, "n-a", ""},
		{"pod-bound without node extras (before 1.30): the pod's node", bound("agent-b", ""), false, "n-b", ""},
		{"being deleted, within its grace period: its last reports count", bound("deleting", "n-a"), false, "n-a", ""},
		{"unbound refused by default", auth.Identity{Username: user}, false, "", ReasonUnbound},
		{"unbound allowed by the setting: no node", auth.Identity{Username: user}, true, "", ""},
		{"pod not in the cache (yet): retry", bound("brand-new", "n-a"), false, "", ReasonPodNotSeen},
		{"pod not on a node in the cache (yet): retry", bound("unscheduled", ""), false, "", ReasonPodNotSeen},
		{"pod replaced under its name", auth.Identity{Username: user, Pod: "agent-a", PodUID: "u-old", Node: "n-a"}, false, "", ReasonPodMismatch},
		{"pod of another service account", auth.Identity{Username: user, Pod: "other-sa", PodUID: "u-other-sa"}, false, "", ReasonPodMismatch},
		{"pod succeeded", bound("done", "n-a"), false, "", ReasonPodTerminated},
		{"pod failed", bound("failed", "n-a"), false, "", ReasonPodTerminated},
		{"pod past its deletion grace period", bound("deleted", "n-a"), false, "", ReasonPodTerminated},
		{"node extra is not the pod's node", bound("agent-a", "n-b"), false, "", ReasonNodeMismatch},
		{"node replaced under its name", auth.Identity{Username: user, Pod: "agent-a", PodUID: "u-agent-a", Node: "n-a", NodeUID: "node-old"}, false, "", ReasonNodeMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(c, Options{AllowUnbound: tt.allowUnbound, Now: func() time.Time { return now }})
			node, err := b.Bind(tt.id)
			if tt.wantReason == "" {
				if err != nil || node != tt.wantNode {
					t.Fatalf("Bind = %q, %v; want %q", node, err, tt.wantNode)
				}
				return
			}
			var ref *Refusal
			if !errors.As(err, &ref) || ref.Reason != tt.wantReason {
				t.Fatalf("Bind = %q, %v; want a refusal %s", node, err, tt.wantReason)
			}
			if ref.Retry != (tt.wantReason == ReasonPodNotSeen) {
				t.Errorf("refusal %s: Retry = %v", ref.Reason, ref.Retry)
			}
			if node != "" {
				t.Errorf("refused with node %q", node)
			}
			t.Log(ref)
		})
	}
}

func uidOr(uid, name string) string {
	if uid != "" {
		return uid
	}
	return name
}
