package overlaycheck

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Names and labels of the per-zone flowserver (kustomize/components/flowserver-zone).
const (
	zoneLabel     = "topology.kubernetes.io/zone"
	zoneSetting   = "ZONETOLL_ZONE"
	serverSetting = "ZONETOLL_SERVER_URL"
	targetsKey    = "ZONETOLL_TARGETS"
	zoneTemplate  = "{zone}"
	serverPort    = 8080
)

// checkZones: the flowservers, the agents' server URL and costcalc's targets agree. In a per-zone build
// (a flowserver with ZONETOLL_ZONE) every zone has exactly one flowserver-<zone> Deployment pinned to
// that zone by a required node affinity, a Service flowserver-<zone> selecting only that zone's server,
// and exactly one costcalc target; the agents use http://flowserver-{zone}.<ns>:8080. In a build with
// one flowserver for all zones, the agents and costcalc name its Service. So a zone listed in one place
// and forgotten in another fails the build instead of losing that zone's reports or dollars.
func (c *checker) checkZones() {
	var servers []workload
	for _, w := range c.workloads {
		if w.obj.GetLabels()[LabelName] == "flowserver" {
			servers = append(servers, w)
		}
	}
	if len(servers) == 0 {
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
	url := func(name string) string { return fmt.Sprintf("http://%s.%s:%d", name, ns, serverPort) }

	zones := map[string]*unstructured.Unstructured{}
	perZone := false
	for _, w := range servers {
		if env(w.template.Spec.Containers, zoneSetting) != "" {
			perZone = true
		}
	}
	var wantTargets []string
	for _, w := range servers {
		zone := env(w.template.Spec.Containers, zoneSetting)
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
				c.add("zones", w.obj, "the flowserver of zone %q must be named flowserver-%s (agents derive the Service name from the zone)", zone, zone)
			}
			if got := requiredZones(w.template.Spec.Affinity); !slices.Equal(got, []string{zone}) {
				c.add("zones", w.obj, "must be pinned to zone %q by a required node affinity on %s (got %v)", zone, zoneLabel, got)
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
