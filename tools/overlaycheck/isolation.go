package overlaycheck

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Pod Security labels (pod-security.kubernetes.io/enforce) and levels.
const (
	LabelPodSecurityEnforce = "pod-security.kubernetes.io/enforce"
	PodSecurityRestricted   = "restricted"
)

// checkPodSecurity: a namespace the build creates enforces a Pod Security level, and it is
// "restricted" unless a workload in it belongs to a service of the capabilities table (flowagent): the
// privileged namespace holds such services alone, so nothing else runs with its leeway.
func (c *checker) checkPodSecurity() {
	for _, o := range c.objs {
		if o.GetKind() != "Namespace" {
			continue
		}
		ns := o.GetName()
		level := o.GetLabels()[LabelPodSecurityEnforce]
		if level == "" {
			c.add("podsecurity", o, "no %s label: the cluster's default level applies", LabelPodSecurityEnforce)
			continue
		}
		var privileged, others []string
		for _, w := range c.workloads {
			if w.obj.GetNamespace() != ns {
				continue
			}
			svc := w.obj.GetLabels()[LabelName]
			if _, ok := c.policy.Capabilities[svc]; ok {
				privileged = append(privileged, svc)
			} else {
				others = append(others, svc)
			}
		}
		switch {
		case len(privileged) > 0 && len(others) > 0:
			c.add("podsecurity", o, "%v share the namespace of %v, which must be %s-enforcing less than %q: give %v a namespace of their own",
				others, privileged, LabelPodSecurityEnforce, PodSecurityRestricted, privileged)
		case len(privileged) == 0 && level != PodSecurityRestricted:
			c.add("podsecurity", o, "%s=%s, want %s: no workload here needs more", LabelPodSecurityEnforce, level, PodSecurityRestricted)
		}
	}
}

// checkNetworkPolicies: every namespace the build creates that runs pods off the host network denies
// ingress by default (a policy selecting every pod with no ingress rule), and every container port of
// such a pod is opened by some policy that selects the pod. Host-network pods are left out:
// NetworkPolicies do not apply to them.
func (c *checker) checkNetworkPolicies() {
	var policies []*networkingv1.NetworkPolicy
	for _, o := range c.objs {
		if o.GetKind() != "NetworkPolicy" {
			continue
		}
		np, err := convert[networkingv1.NetworkPolicy](o)
		if err != nil {
			c.add("parse", o, "%v", err)
			continue
		}
		policies = append(policies, np)
	}
	selects := func(np *networkingv1.NetworkPolicy, ns string, l map[string]string) bool {
		if np.Namespace != ns {
			return false
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		return err == nil && sel.Matches(labels.Set(l))
	}
	isIngress := func(np *networkingv1.NetworkPolicy) bool {
		return len(np.Spec.PolicyTypes) == 0 || slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
	}
	created := map[string]bool{}
	for _, o := range c.objs {
		if o.GetKind() == "Namespace" {
			created[o.GetName()] = true
		}
	}
	denies := map[string]bool{}
	for _, np := range policies {
		if isIngress(np) && len(np.Spec.PodSelector.MatchLabels)+len(np.Spec.PodSelector.MatchExpressions) == 0 && len(np.Spec.Ingress) == 0 {
			denies[np.Namespace] = true
		}
	}
	for _, w := range c.workloads {
		ns := w.obj.GetNamespace()
		if w.template.Spec.HostNetwork || !created[ns] {
			continue
		}
		if !denies[ns] {
			c.add("networkpolicy", w.obj, "namespace %s has no default-deny ingress NetworkPolicy (podSelector: {}, policyTypes: [Ingress], no rules)", ns)
		}
		for _, ct := range w.template.Spec.Containers {
			for _, p := range ct.Ports {
				if !c.portOpened(policies, selects, isIngress, ns, w.template.Labels, p) {
					c.add("networkpolicy", w.obj, "container %s port %d (%s) is opened by no NetworkPolicy selecting its pods", ct.Name, p.ContainerPort, p.Name)
				}
			}
		}
	}
}

func (c *checker) portOpened(policies []*networkingv1.NetworkPolicy, selects func(*networkingv1.NetworkPolicy, string, map[string]string) bool,
	isIngress func(*networkingv1.NetworkPolicy) bool, ns string, podLabels map[string]string, p corev1.ContainerPort) bool {
	for _, np := range policies {
		if !isIngress(np) || !selects(np, ns, podLabels) {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			if len(rule.From) == 0 {
				continue // open to everyone: not what this check wants to find either
			}
			for _, rp := range rule.Ports {
				if rp.Port == nil {
					return true
				}
				if (rp.Port.Type == intstr.String && rp.Port.StrVal == p.Name) || (rp.Port.Type == intstr.Int && rp.Port.IntVal == p.ContainerPort) {
					return true
				}
			}
		}
	}
	return false
}
