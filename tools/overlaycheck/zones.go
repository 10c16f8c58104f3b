package overlaycheck

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Names and labels of the per-zone flowservers (kustomize/base/flowserver/zone, instantiated by each
// overlays/<name>/zones/<zone>/ folder).
const (
	zoneLabel     = "topology.kubernetes.io/zone"
	zoneSetting   = "ZONETOLL_ZONE"
	serverSetting = "ZONETOLL_SERVER_URL"
	targetsKey    = "ZONETOLL_TARGETS"
	zoneTemplate  = "{zone}"
	serverPort    = 8080
	// ZonesDir is the folder of an overlay with one folder per zone, each named for its zone.
	ZonesDir = "zones"
)

// checkZones: the flowservers, the agents' server URL and costcalc's targets agree. In a per-zone build
// (a flowserver with ZONETOLL_ZONE) every zone has exactly one flowserver-<zone> Deployment pinned to
// that zone (nodeSelector or required node affinity on topology.kubernetes.io/zone), a Service
// flowserver-<zone> selecting only that zone's server, and exactly one costcalc target; the agents use
// https://flowserver-{zone}.<ns>:8080. In a build with one flowserver for all zones, the agents and
// costcalc name its Service. A build with agents or costcalc but no flowserver fails too. So a zone
// listed in one place and forgotten in another fails the build instead of losing that zone's reports or
// dollars.
func (c *checker) checkZones() {
	var servers []workload
	for _, w := range c.workloads {
		if w.obj.GetLabels()[LabelName] == "flowserver" {
			servers = append(servers, w)
		}
	}
	if len(servers) == 0 {
		for _, w := range c.workloads {
			switch w.obj.GetLabels()[LabelName] {
			case "flowagent":
				c.add("zones", w.obj, "agents report to %s but the build deploys no flowserver: list the zones (docs/deploy.md#per-zone-flowserver)", env(w.template.Spec.Containers, serverSetting))
			case "costcalc":
				c.add("zones", w.obj, "the build deploys no flowserver for costcalc to scrape")
			}
		}
		return
	}
	services := map[string]*corev1.Service{} // namespace/name → flowserver Service
	for _, o := range c.objs {
		if o.GetKind() == "Service" && o.GetLabels()[LabelName] == "flowserver" {
			if s, err := convert[corev1.Service](o); err == nil {
				services[o.GetNamespace()+"/"+o.GetName()] = s
			}
		}
	}
	ns := servers[0].obj.GetNamespace()
	url := func(name string) string { return fmt.Sprintf("https://%s.%s:%d", name, ns, serverPort) }

	zones := map[string]*unstructured.Unstructured{}
	perZone := false
	for _, w := range servers {
		if serverZone(w) != "" {
			perZone = true
		}
	}
	var wantTargets []string
	for _, w := range servers {
		zone := serverZone(w)
		name := w.obj.GetName()
		switch {
		case !perZone:
			wantTargets = append(wantTargets, url(name)+"/metrics")
		case zone == "":
			c.add("zones", w.obj, "a flowserver without %s beside per-zone ones: its agents' reports would cross zones", zoneSetting)
			continue
		case zones[zone] != nil:
			c.add("zones", w.obj, "zone %q has a second flowserver (%s)", zone, id(zones[zone]))
			continue
		default:
			zones[zone] = w.obj
			if name != "flowserver-"+zone {
				c.add("zones", w.obj, "the flowserver of zone %q must be named flowserver-%s (agents derive the Service name from the zone): the name suffix and the zone label of its folder differ", zone, zone)
			}
			if got := pinnedZones(w.template.Spec); !slices.Equal(got, []string{zone}) {
				c.add("zones", w.obj, "must be pinned to zone %q by a nodeSelector or a required node affinity on %s (got %v)", zone, zoneLabel, got)
			}
			wantTargets = append(wantTargets, url("flowserver-"+zone)+"/metrics")
		}
		// The Service agents and costcalc use must select this server's pods and no other's.
		svcName := name
		if zone != "" {
			svcName = "flowserver-" + zone
		}
		svc := services[ns+"/"+svcName]
		if svc == nil {
			c.add("zones", w.obj, "no Service %s for this flowserver", svcName)
			continue
		}
		for _, other := range servers {
			if sel := selects(svc.Spec.Selector, other.template.Labels); sel != (other.obj == w.obj) {
				c.add("zones", w.obj, "Service %s selects %v: it must select this flowserver's pods and only them (it matches %s: %t)", svcName, svc.Spec.Selector, id(other.obj), sel)
			}
		}
	}

	wantURL := url("flowserver")
	if perZone {
		wantURL = url("flowserver-" + zoneTemplate)
	}
	for _, w := range c.workloads {
		switch w.obj.GetLabels()[LabelName] {
		case "flowagent":
			if got := env(w.template.Spec.Containers, serverSetting); got != wantURL {
				c.add("zones", w.obj, "%s is %q, want %q", serverSetting, got, wantURL)
			}
		case "costcalc":
			got := c.containerSetting(w, targetsKey)
			var targets []string
			for _, t := range strings.Split(got, ",") {
				if t = strings.TrimSpace(t); t != "" {
					targets = append(targets, t)
				}
			}
			slices.Sort(targets)
			slices.Sort(wantTargets)
			if !slices.Equal(targets, wantTargets) {
				c.add("zones", w.obj, "%s lists %v; every flowserver exactly once is %v", targetsKey, targets, wantTargets)
			}
		}
	}
}

// serverZone is the zone a flowserver serves: its ZONETOLL_ZONE, given literally or taken by the downward
// API from a label of its own pods (what base/flowserver/zone does), resolved as the kubelet would.
func serverZone(w workload) string {
	for _, ct := range w.template.Spec.Containers {
		for _, e := range ct.Env {
			if e.Name != zoneSetting {
				continue
			}
			if e.ValueFrom == nil {
				return e.Value
			}
			if f := e.ValueFrom.FieldRef; f != nil {
				if key, ok := labelFieldPath(f.FieldPath); ok {
					return w.template.Labels[key]
				}
			}
			return ""
		}
	}
	return ""
}

// labelFieldPath returns the key of a downward-API field path metadata.labels['<key>'].
func labelFieldPath(p string) (string, bool) {
	const pre, post = "metadata.labels['", "']"
	if strings.HasPrefix(p, pre) && strings.HasSuffix(p, post) && len(p) > len(pre)+len(post) {
		return p[len(pre) : len(p)-len(post)], true
	}
	return "", false
}

// env is the literal value of a variable in the first container that sets it.
func env(cts []corev1.Container, name string) string {
	for _, ct := range cts {
		for _, e := range ct.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

// containerSetting is a variable's value from env or from a ConfigMap of envFrom (env wins, as in
// Kubernetes).
func (c *checker) containerSetting(w workload, name string) string {
	if v := env(w.template.Spec.Containers, name); v != "" {
		return v
	}
	for _, ct := range w.template.Spec.Containers {
		for _, ef := range ct.EnvFrom {
			if ef.ConfigMapRef == nil || !strings.HasPrefix(name, ef.Prefix) {
				continue
			}
			for _, o := range c.objs {
				if o.GetKind() == "ConfigMap" && o.GetNamespace() == w.obj.GetNamespace() && o.GetName() == ef.ConfigMapRef.Name {
					if v, ok, _ := unstructured.NestedString(o.Object, "data", strings.TrimPrefix(name, ef.Prefix)); ok {
						return v
					}
				}
			}
		}
	}
	return ""
}

// pinnedZones are the zones a pod may be scheduled to by its nodeSelector and required node affinity on
// topology.kubernetes.io/zone, both of which must hold (nil when neither restricts the zone).
func pinnedZones(spec corev1.PodSpec) []string {
	zones := requiredZones(spec.Affinity)
	sel, ok := spec.NodeSelector[zoneLabel]
	switch {
	case !ok:
		return zones
	case zones == nil:
		return []string{sel}
	case slices.Contains(zones, sel):
		return []string{sel}
	default:
		return []string{} // the two exclude each other: schedulable nowhere
	}
}

// requiredZones are the zones a required node affinity allows through topology.kubernetes.io/zone
// (nil when there is none, or when a term does not restrict the zone, since terms are ORed).
func requiredZones(a *corev1.Affinity) []string {
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	var zones []string
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		found := false
		for _, e := range term.MatchExpressions {
			if e.Key == zoneLabel && e.Operator == corev1.NodeSelectorOpIn {
				zones = append(zones, e.Values...)
				found = true
			}
		}
		if !found {
			return nil
		}
	}
	slices.Sort(zones)
	return slices.Compact(zones)
}

// checkZoneFolders: each folder under <dir>/zones is one zone of the build, named for it: the overlay
// lists it under resources, and it deploys flowserver-<folder> serving the zone <folder>. A zone folder
// copied but not listed, or listed but still holding another zone's values, then fails the build instead
// of leaving its zone without a server. (A zone listed but without costcalc target, or the other way
// round, fails checkZones.)
func checkZoneFolders(fSys filesys.FileSystem, dir string, objs []*unstructured.Unstructured) ([]Problem, error) {
	zonesDir := filepath.Join(dir, ZonesDir)
	if !fSys.IsDir(zonesDir) {
		return nil, nil
	}
	entries, err := fSys.ReadDir(zonesDir)
	if err != nil {
		return nil, fmt.Errorf("listing the zones of %s: %w", dir, err)
	}
	c := &checker{objs: objs}
	for _, o := range objs {
		_ = c.addWorkload(o) // Check reports what does not parse
	}
	byZone := map[string]workload{}
	for _, w := range c.workloads {
		if w.obj.GetLabels()[LabelName] == "flowserver" {
			if z := serverZone(w); z != "" {
				byZone[z] = w
			}
		}
	}
	var problems []Problem
	for _, e := range entries {
		if !fSys.IsDir(filepath.Join(zonesDir, e)) {
			continue
		}
		folder := ZonesDir + "/" + filepath.Base(e)
		zone := filepath.Base(e)
		w, ok := byZone[zone]
		switch {
		case !ok:
			problems = append(problems, Problem{Check: "zones", Object: folder,
				Message: fmt.Sprintf("no flowserver serves zone %q: list %s under the overlay's resources, and its folder must name the zone %s (nameSuffix -%s, label %s: %s)", zone, folder, zone, zone, zoneLabel, zone)})
		case w.obj.GetName() != "flowserver-"+zone:
			problems = append(problems, Problem{Check: "zones", Object: folder,
				Message: fmt.Sprintf("zone %q is served by %s, not flowserver-%s", zone, id(w.obj), zone)})
		}
	}
	return problems, nil
}

// CheckDir builds the kustomization in dir and returns its objects and every broken invariant, sorted:
// Check on the objects, and that each of the overlay's zone folders is a zone of the build.
func CheckDir(fSys filesys.FileSystem, dir string, p Policy) ([]*unstructured.Unstructured, []Problem, error) {
	objs, err := Build(fSys, dir)
	if err != nil {
		return nil, nil, err
	}
	problems := Check(objs, p)
	folders, err := checkZoneFolders(fSys, dir, objs)
	if err != nil {
		return nil, nil, err
	}
	problems = append(problems, folders...)
	sortProblems(problems)
	return objs, problems, nil
}
