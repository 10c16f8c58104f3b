package advice

import (
	"fmt"
	"regexp"
	"strconv"
)

// Recommended is the same-zone setting a Kubernetes release supports, and how to apply it.
type Recommended struct {
	Setting   string // as a person reads it
	Field     string // spec.trafficDistribution value; "" when the annotation is the way
	Key       string // annotation key, when Field is ""
	Value     string // annotation value
	Note      string // why this one, for this version
	Safeguard string // what Kubernetes itself does when the zone's endpoints cannot cope
}

// Command is the exact kubectl command that applies the setting to one Service.
func (r Recommended) Command(namespace, service string) string {
	if r.Field != "" {
		return fmt.Sprintf(`kubectl -n %s patch service %s --type=merge -p '{"spec":{"trafficDistribution":"%s"}}'`, namespace, service, r.Field)
	}
	return fmt.Sprintf("kubectl -n %s annotate service %s %s=%s", namespace, service, r.Key, r.Value)
}

const (
	safeguardField = "trafficDistribution has no safeguard beyond one: a client zone without a ready endpoint falls back to every endpoint. " +
		"Nothing balances load across zones, so check the overload risks before switching."
	safeguardAuto = "the EndpointSlice controller allocates hints only while endpoints are spread in proportion to the zones' allocatable CPU, " +
		"and removes them (routing cluster-wide again) when a zone would be overloaded; the saving can silently vanish."
)

// Checked in k8s.io/kubernetes v1.37.2 (pkg/features/kube_features.go, the trafficDistribution validation in
// pkg/apis/core/validation) where the gate still exists; the rest from KEP-4444/KEP-3015 (docs/costcalc.md "Advice"):
// PreferClose (ServiceTrafficDistribution gate) alpha 1.30, beta (on) 1.31, GA 1.33; PreferSameZone and
// PreferSameNode (PreferSameTrafficDistribution gate) alpha 1.33, beta (on) 1.34, GA 1.35, PreferClose
// then a deprecated alias of PreferSameZone; the topology-mode annotation from 1.27, before it
// service.kubernetes.io/topology-aware-hints (beta, on, from 1.23).

// RecommendFor picks the setting for a Kubernetes git version ("v1.37.2", "v1.34.1-eks-1234"). An unknown
// version is taken as 1.35, the oldest release zonetoll supports, and the note says so.
func RecommendFor(version string) Recommended {
	minor, ok := Minor(version)
	note := ""
	if !ok {
		minor = 35
		note = "Kubernetes version unknown (no zonetoll_kubernetes_info and no --kubernetes-version): assumed 1.35, the oldest release zonetoll supports. "
	}
	switch {
	case minor >= 35:
		return Recommended{Setting: "trafficDistribution: PreferSameZone", Field: "PreferSameZone", Safeguard: safeguardField,
			Note: note + "PreferSameZone is GA since 1.35 (PreferClose is its deprecated alias)."}
	case minor == 34:
		return Recommended{Setting: "trafficDistribution: PreferSameZone", Field: "PreferSameZone", Safeguard: safeguardField,
			Note: note + "PreferSameZone is beta and on by default in 1.34."}
	case minor >= 31:
		return Recommended{Setting: "trafficDistribution: PreferClose", Field: "PreferClose", Safeguard: safeguardField,
			Note: note + fmt.Sprintf("1.%d has PreferClose (beta on by default from 1.31, GA in 1.33); PreferSameZone needs 1.34 (alpha, off, in 1.33).", minor)}
	case minor >= 27:
		return Recommended{Setting: "annotation service.kubernetes.io/topology-mode: Auto", Key: "service.kubernetes.io/topology-mode", Value: "Auto", Safeguard: safeguardAuto,
			Note: note + fmt.Sprintf("1.%d has no trafficDistribution on by default (PreferClose is alpha in 1.30, beta from 1.31): topology-aware routing by annotation.", minor)}
	}
	return Recommended{Setting: "annotation service.kubernetes.io/topology-aware-hints: auto", Key: "service.kubernetes.io/topology-aware-hints", Value: "auto", Safeguard: safeguardAuto,
		Note: note + fmt.Sprintf("1.%d predates the topology-mode annotation (1.27): the older topology-aware-hints annotation (beta from 1.23).", minor)}
}

var gitVersion = regexp.MustCompile(`^v?(\d+)\.(\d+)`)

// Minor returns the minor release of a Kubernetes 1.x git version.
func Minor(version string) (int, bool) {
	m := gitVersion.FindStringSubmatch(version)
	if m == nil || m[1] != "1" {
		return 0, false
	}
	n, err := strconv.Atoi(m[2])
	return n, err == nil
}
