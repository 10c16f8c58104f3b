// Package overlaycheck builds zonetoll's kustomize overlays with kustomize's own library (krusty)
// and checks what every overlay must keep true: pinned images, resources and probes on every
// container, a locked-down security context, RBAC no wider than docs/deploy.md lists, consistent
// labels and selectors, only ZONETOLL_* variables the services really read, and per-zone flowservers that
// agree with the agents, costcalc and the overlay's zone folders.
package overlaycheck

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The labels every object carries.
const (
	LabelName   = "app.kubernetes.io/name"
	LabelPartOf = "app.kubernetes.io/part-of"
	PartOf      = "zonetoll"
)

// Targets are the kustomizations checked under a repository root: every overlay folder, each of which
// users apply. kustomize/base is not one: it deploys no flowserver (the overlays add one per zone) and is
// checked as part of every overlay.
func Targets(repoRoot string) ([]string, error) {
	var targets []string
	entries, err := os.ReadDir(filepath.Join(repoRoot, "kustomize", "overlays"))
	if err != nil {
		return nil, fmt.Errorf("listing overlays: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			targets = append(targets, filepath.Join(repoRoot, "kustomize", "overlays", e.Name()))
		}
	}
	return targets, nil
}

// Build runs kustomize on dir (as `kubectl kustomize` would, with the default load restrictions)
// and returns the objects.
func Build(fSys filesys.FileSystem, dir string) ([]*unstructured.Unstructured, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fSys, dir)
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range m.Resources() {
		// Through JSON, so numbers are int64 as unstructured.Unstructured requires (kyaml's maps hold int).
		data, err := r.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("reading %s from %s: %w", r.CurId(), dir, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("decoding %s from %s: %w", r.CurId(), dir, err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}

// YAML is the build output as one multi-document YAML stream, for kubectl apply -f.
func YAML(fSys filesys.FileSystem, dir string) ([]byte, error) {
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fSys, dir)
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", dir, err)
	}
	return m.AsYaml()
}

// Problem is one broken invariant.
type Problem struct {
	Check   string // images, resources, probes, security, rbac, labels, settings, disruption, zones, tls
	Object  string // Kind/namespace/name
	Message string
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s: %s", p.Check, p.Object, p.Message) }

// workload is a Deployment, DaemonSet or StatefulSet reduced to what the checks read.
type workload struct {
	obj      *unstructured.Unstructured
	selector *metav1.LabelSelector
	template corev1.PodTemplateSpec
}

func id(o *unstructured.Unstructured) string {
	if o.GetNamespace() == "" {
		return o.GetKind() + "/" + o.GetName()
	}
	return o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
}

type checker struct {
	policy    Policy
	objs      []*unstructured.Unstructured
	workloads []workload
	problems  []Problem
}

func (c *checker) add(check string, o *unstructured.Unstructured, format string, args ...any) {
	c.problems = append(c.problems, Problem{Check: check, Object: id(o), Message: fmt.Sprintf(format, args...)})
}

// Check returns every broken invariant of one build, sorted.
func Check(objs []*unstructured.Unstructured, p Policy) []Problem {
	c := &checker{policy: p, objs: objs}
	for _, o := range objs {
		if err := c.addWorkload(o); err != nil {
			c.add("parse", o, "%v", err)
		}
	}
	c.checkLabels()
	for _, w := range c.workloads {
		c.checkContainers(w)
	}
	c.checkOneRelease()
	c.checkRBAC()
	c.checkSelectors()
	c.checkZones()
	c.checkTLS()
	c.checkPodSecurity()
	c.checkNetworkPolicies()
	sortProblems(c.problems)
	return c.problems
}

func sortProblems(ps []Problem) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].String() < ps[j].String() })
}

// Rules returns the rules of the Roles and of the ClusterRoles that the kustomization in dir builds:
// what a service deployed from it may do.
func Rules(dir string) (rules, clusterRules []rbacv1.PolicyRule, err error) {
	objs, err := Build(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range objs {
		r, _, ok, err := roleRules(o)
		switch {
		case !ok:
		case err != nil:
			return nil, nil, fmt.Errorf("reading %s %s: %w", o.GetKind(), o.GetName(), err)
		case o.GetKind() == "Role":
			rules = append(rules, r...)
		default:
			clusterRules = append(clusterRules, r...)
		}
	}
	if len(rules)+len(clusterRules) == 0 {
		return nil, nil, fmt.Errorf("%s defines no Role or ClusterRole", dir)
	}
	return rules, clusterRules, nil
}

// roleRules returns the rules of a Role or ClusterRole and whether it is an aggregated ClusterRole;
// ok is false for any other kind.
func roleRules(o *unstructured.Unstructured) (rules []rbacv1.PolicyRule, aggregated, ok bool, err error) {
	switch o.GetKind() {
	case "Role":
		r, err := convert[rbacv1.Role](o)
		if err != nil {
			return nil, false, true, err
		}
		return r.Rules, false, true, nil
	case "ClusterRole":
		r, err := convert[rbacv1.ClusterRole](o)
		if err != nil {
			return nil, false, true, err
		}
		return r.Rules, r.AggregationRule != nil, true, nil
	}
	return nil, false, false, nil
}

// boundRole returns the key (kind/namespace/name, as checkRBAC keys roles) of the role a RoleBinding
// or ClusterRoleBinding binds; ok is false for any other kind.
func boundRole(o *unstructured.Unstructured) (key string, ref rbacv1.RoleRef, ok bool, err error) {
	ns := ""
	switch o.GetKind() {
	case "RoleBinding":
		b, err := convert[rbacv1.RoleBinding](o)
		if err != nil {
			return "", ref, true, err
		}
		if ref = b.RoleRef; ref.Kind != "ClusterRole" {
			ns = o.GetNamespace()
		}
	case "ClusterRoleBinding":
		b, err := convert[rbacv1.ClusterRoleBinding](o)
		if err != nil {
			return "", ref, true, err
		}
		ref = b.RoleRef
	default:
		return "", ref, false, nil
	}
	return ref.Kind + "/" + ns + "/" + ref.Name, ref, true, nil
}

func convert[T any](o *unstructured.Unstructured) (*T, error) {
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, &v, true); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", id(o), err)
	}
	return &v, nil
}

func (c *checker) addWorkload(o *unstructured.Unstructured) error {
	switch o.GetKind() {
	case "Deployment":
		d, err := convert[appsv1.Deployment](o)
		if err != nil {
			return err
		}
		c.workloads = append(c.workloads, workload{o, d.Spec.Selector, d.Spec.Template})
	case "DaemonSet":
		d, err := convert[appsv1.DaemonSet](o)
		if err != nil {
			return err
		}
		c.workloads = append(c.workloads, workload{o, d.Spec.Selector, d.Spec.Template})
	case "StatefulSet":
		d, err := convert[appsv1.StatefulSet](o)
		if err != nil {
			return err
		}
		c.workloads = append(c.workloads, workload{o, d.Spec.Selector, d.Spec.Template})
	case "Pod", "ReplicaSet", "Job", "CronJob":
		return fmt.Errorf("%s is not a kind zonetoll deploys; use a Deployment, DaemonSet or StatefulSet", o.GetKind())
	}
	return nil
}

func (c *checker) checkLabels() {
	for _, o := range c.objs {
		l := o.GetLabels()
		if l[LabelPartOf] != PartOf {
			c.add("labels", o, "label %s=%s missing (got %q)", LabelPartOf, PartOf, l[LabelPartOf])
		}
		if o.GetKind() != "Namespace" && l[LabelName] == "" {
			c.add("labels", o, "label %s missing", LabelName)
		}
	}
	for _, w := range c.workloads {
		name := w.obj.GetLabels()[LabelName]
		tl := w.template.Labels
		if tl[LabelName] != name {
			c.add("labels", w.obj, "pod template label %s=%q differs from the workload's %q", LabelName, tl[LabelName], name)
		}
		if tl[LabelPartOf] != PartOf {
			c.add("labels", w.obj, "pod template lacks %s=%s", LabelPartOf, PartOf)
		}
		if w.selector == nil || w.selector.MatchLabels[LabelName] != name {
			c.add("labels", w.obj, "selector must match %s=%s", LabelName, name)
		} else if !selects(w.selector.MatchLabels, tl) || len(w.selector.MatchExpressions) > 0 {
			c.add("labels", w.obj, "selector %v does not select its own pod template %v", w.selector.MatchLabels, tl)
		}
		for _, t := range w.template.Spec.TopologySpreadConstraints {
			if t.LabelSelector == nil || !selects(t.LabelSelector.MatchLabels, tl) || t.LabelSelector.MatchLabels[LabelName] != name {
				c.add("labels", w.obj, "topology spread on %s does not select the workload's own pods", t.TopologyKey)
			}
		}
	}
}

// selects reports whether a matchLabels selector (non-empty) matches the labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkSelectors: every Service and PDB selects the pods of a workload of its own service; every
// workload has a Service (metrics) and every Deployment or StatefulSet a PodDisruptionBudget (a drain
// ignores DaemonSet pods, so a PDB there would protect nothing).
func (c *checker) checkSelectors() {
	hasService := map[*unstructured.Unstructured]bool{}
	hasPDB := map[*unstructured.Unstructured]bool{}
	match := func(o *unstructured.Unstructured, sel map[string]string, kind string, seen map[*unstructured.Unstructured]bool) {
		found := false
		for _, w := range c.workloads {
			if w.obj.GetNamespace() == o.GetNamespace() && selects(sel, w.template.Labels) {
				found = true
				seen[w.obj] = true
				if w.obj.GetLabels()[LabelName] != o.GetLabels()[LabelName] {
					c.add("labels", o, "%s selects pods of %s, which belongs to another service", kind, id(w.obj))
				}
			}
		}
		if !found {
			c.add("labels", o, "%s selector %v selects no workload's pods", kind, sel)
		}
	}
	for _, o := range c.objs {
		switch o.GetKind() {
		case "Service":
			s, err := convert[corev1.Service](o)
			if err != nil {
				c.add("parse", o, "%v", err)
				continue
			}
			match(o, s.Spec.Selector, "Service", hasService)
		case "PodDisruptionBudget":
			p, err := convert[policyv1.PodDisruptionBudget](o)
			if err != nil {
				c.add("parse", o, "%v", err)
				continue
			}
			var sel map[string]string
			if p.Spec.Selector != nil {
				sel = p.Spec.Selector.MatchLabels
			}
			match(o, sel, "PodDisruptionBudget", hasPDB)
		}
	}
	for _, w := range c.workloads {
		if !hasService[w.obj] {
			c.add("labels", w.obj, "no Service selects its pods (metrics are scraped through one)")
		}
		if w.obj.GetKind() != "DaemonSet" && !hasPDB[w.obj] {
			c.add("disruption", w.obj, "no PodDisruptionBudget selects its pods")
		}
	}
}

func (c *checker) checkContainers(w workload) {
	svc := w.obj.GetLabels()[LabelName]
	spec := w.template.Spec
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)
	for i, ct := range all {
		initC := i < len(spec.InitContainers)
		where := fmt.Sprintf("container %s", ct.Name)
		checkImage(c, w.obj, where, ct.Image)
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if _, ok := ct.Resources.Requests[r]; !ok {
				c.add("resources", w.obj, "%s has no %s request", where, r)
			}
			if _, ok := ct.Resources.Limits[r]; !ok {
				c.add("resources", w.obj, "%s has no %s limit", where, r)
			}
		}
		if !initC {
			if ct.LivenessProbe == nil {
				c.add("probes", w.obj, "%s has no liveness probe", where)
			}
			if ct.ReadinessProbe == nil {
				c.add("probes", w.obj, "%s has no readiness probe", where)
			}
		}
		c.checkSecurity(w, svc, where, ct)
		c.checkSettings(w, svc, where, ct)
	}
}

// ImagePrefix is where zonetoll's own images live.
const ImagePrefix = "ghcr.io/zonetoll/"

// checkOneRelease: zonetoll's services talk to each other in versioned formats, so one build deploys
// one release: all of zonetoll's images carry the same tag.
func (c *checker) checkOneRelease() {
	tags := map[string][]string{}
	for _, w := range c.workloads {
		for _, ct := range append(slices.Clone(w.template.Spec.InitContainers), w.template.Spec.Containers...) {
			if !strings.HasPrefix(ct.Image, ImagePrefix) || strings.Contains(ct.Image, "@") {
				continue
			}
			name := ct.Image[strings.LastIndex(ct.Image, "/")+1:]
			if i := strings.LastIndex(name, ":"); i >= 0 {
				tags[name[i+1:]] = append(tags[name[i+1:]], ct.Image)
			}
		}
	}
	if len(tags) > 1 {
		var all []string
		for _, imgs := range tags {
			all = append(all, imgs...)
		}
		slices.Sort(all)
		c.problems = append(c.problems, Problem{Check: "images", Object: "(build)",
			Message: fmt.Sprintf("zonetoll images of different releases in one build: %s", strings.Join(all, ", "))})
	}
}

func checkImage(c *checker, o *unstructured.Unstructured, where, image string) {
	if strings.Contains(image, "@sha256:") {
		return
	}
	name := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 || i == len(name)-1 {
		c.add("images", o, "%s image %q is not pinned: give it a tag or a digest", where, image)
		return
	}
	if name[i+1:] == "latest" {
		c.add("images", o, "%s image %q uses latest: pin a version tag or a digest", where, image)
	}
}

func (c *checker) checkSecurity(w workload, svc, where string, ct corev1.Container) {
	pod := w.template.Spec.SecurityContext
	sc := ct.SecurityContext
	if sc == nil {
		c.add("security", w.obj, "%s has no securityContext", where)
		return
	}
	allowedCaps, mayBeRoot := c.policy.Capabilities[svc]
	if sc.Privileged != nil && *sc.Privileged {
		c.add("security", w.obj, "%s is privileged", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.add("security", w.obj, "%s must set allowPrivilegeEscalation: false", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.add("security", w.obj, "%s must set readOnlyRootFilesystem: true", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.add("security", w.obj, "%s must drop ALL capabilities", where)
	}
	if sc.Capabilities != nil {
		for _, cp := range sc.Capabilities.Add {
			if !slices.Contains(allowedCaps, strings.TrimPrefix(string(cp), "CAP_")) {
				c.add("security", w.obj, "%s adds capability %s, not in the capabilities table of docs/deploy.md for %s", where, cp, svc)
			}
		}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil && pod != nil {
		nonRoot = pod.RunAsNonRoot
	}
	if !mayBeRoot && (nonRoot == nil || !*nonRoot) {
		c.add("security", w.obj, "%s must run with runAsNonRoot: true (only services in the capabilities table may run as root)", where)
	}
	if w.template.Spec.HostPID || w.template.Spec.HostIPC {
		c.add("security", w.obj, "hostPID and hostIPC are never needed")
	}
	if w.template.Spec.HostNetwork && !mayBeRoot {
		c.add("security", w.obj, "hostNetwork only for services in the capabilities table of docs/deploy.md")
	}
}

func (c *checker) checkSettings(w workload, svc, where string, ct corev1.Container) {
	known, ok := c.policy.Settings[svc]
	var names []string
	for _, e := range ct.Env {
		names = append(names, e.Name)
	}
	for _, ef := range ct.EnvFrom {
		if ef.ConfigMapRef != nil {
			names = append(names, c.configMapKeys(w.obj.GetNamespace(), ef.ConfigMapRef.Name, ef.Prefix)...)
		}
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "ZONETOLL_") {
			continue
		}
		if !ok {
			c.add("settings", w.obj, "%s sets %s but there is no docs/settings/%s.md to check it against", where, n, svc)
			continue
		}
		if !known[n] {
			c.add("settings", w.obj, "%s sets %s, which %s does not read (docs/settings/%s.md)", where, n, svc, svc)
		}
	}
}

func (c *checker) configMapKeys(ns, name, prefix string) []string {
	for _, o := range c.objs {
		if o.GetKind() == "ConfigMap" && o.GetNamespace() == ns && o.GetName() == name {
			data, _, _ := unstructured.NestedStringMap(o.Object, "data")
			var keys []string
			for k := range data {
				keys = append(keys, prefix+k)
			}
			return keys
		}
	}
	return nil
}

// checkRBAC: every rule of every Role and ClusterRole is covered by the table, and every binding
// binds a role of this build (a binding to, say, cluster-admin would bypass the table).
func (c *checker) checkRBAC() {
	roles := map[string]bool{}
	for _, o := range c.objs {
		rules, aggregated, ok, err := roleRules(o)
		if !ok {
			continue
		}
		if err != nil {
			c.add("parse", o, "%v", err)
			continue
		}
		if aggregated {
			c.add("rbac", o, "aggregated ClusterRoles take rules from elsewhere: not allowed")
		}
		roles[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = true
		svc := o.GetLabels()[LabelName]
		cluster := o.GetKind() == "ClusterRole"
		for _, rule := range rules {
			if len(rule.NonResourceURLs) > 0 {
				c.add("rbac", o, "nonResourceURLs %v are not in the RBAC table", rule.NonResourceURLs)
			}
			for _, g := range rule.APIGroups {
				for _, res := range rule.Resources {
					for _, v := range rule.Verbs {
						ok := false
						for _, row := range c.policy.RBAC {
							if row.allows(svc, g, res, v, cluster, rule.ResourceNames) {
								ok = true
								break
							}
						}
						if !ok {
							scope := "namespace"
							if cluster {
								scope = "cluster"
							}
							names := ""
							if len(rule.ResourceNames) > 0 {
								names = fmt.Sprintf(" (names %v)", rule.ResourceNames)
							}
							c.add("rbac", o, "%s may %s %s in group %q%s at %s scope: not in the RBAC table of docs/deploy.md", svc, v, res, g, names, scope)
						}
					}
				}
			}
		}
	}
	for _, o := range c.objs {
		key, ref, ok, err := boundRole(o)
		switch {
		case !ok:
		case err != nil:
			c.add("parse", o, "%v", err)
		case !roles[key]:
			c.add("rbac", o, "binds %s %s, which this build does not define", ref.Kind, ref.Name)
		}
	}
}
