package pricing

import (
	"regexp"
)

// Endpoint is one end of a traffic series, as the flowserver labels it.
type Endpoint struct {
	Namespace string `json:"namespace"`
	Workload  string `json:"workload"`
	Kind      string `json:"kind"`
	Zone      string `json:"zone"`
}

// Kinds the flowserver gives endpoints that matter for pricing.
const (
	KindExternal = "external"     // outside every known place; zone is ""
	KindOverflow = "__overflow__" // the series limit was hit: the kind is lost, the zones are kept
)

// Reasons a flow is not priced; they are the values of the reason label of the unpriced-bytes metric.
const (
	ReasonSrcZoneUnknown     = "src_zone_unknown"
	ReasonDstZoneUnknown     = "dst_zone_unknown"
	ReasonRegionUnknown      = "region_unknown"
	ReasonExternalToExternal = "external_to_external"
)

// Regions maps a zone to its region. Zones the flowserver announced (zonetoll_zone_info) win; for other
// zones the cloud's naming convention is used, so cross-region traffic is told apart even without them.
type Regions struct {
	Known map[string]string // zone → region, from zonetoll_zone_info
	Cloud string            // the naming convention to fall back on
}

// Conventions derive a region from a zone name, per cloud. AWS: us-east-1a → us-east-1 (Local Zones
// such as us-west-2-lax-1a → us-west-2); GCP: us-central1-a → us-central1; Azure (AKS zone labels):
// eastus-1 → eastus.
var conventions = map[string]*regexp.Regexp{
	"aws":   regexp.MustCompile(`^([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d+)(?:[a-z]|-[a-z]+-\d+[a-z])$`),
	"gcp":   regexp.MustCompile(`^([a-z]+-[a-z]+\d+)-[a-z]$`),
	"azure": regexp.MustCompile(`^([a-z0-9]+)-\d+$`),
}

// Region returns the region of zone and whether it is known.
func (r Regions) Region(zone string) (string, bool) {
	if zone == "" {
		return "", false
	}
	if reg, ok := r.Known[zone]; ok && reg != "" {
		return reg, true
	}
	if re := conventions[r.Cloud]; re != nil {
		if m := re.FindStringSubmatch(zone); m != nil {
			return m[1], true
		}
	}
	return "", false
}

// Classify decides what kind of crossing traffic from src to dst makes. For Unpriced it also says why.
//
// Traffic to or from an external endpoint is internet traffic whatever the in-cluster end's zone: a
// cloud charges internet egress the same from every zone of a region, so that price needs no zone.
// Otherwise both zones must be known; an overflow series with an empty zone cannot be told from
// external traffic and is unpriced too.
func Classify(src, dst Endpoint, regions Regions) (Class, string) {
	srcExt, dstExt := src.Kind == KindExternal, dst.Kind == KindExternal
	switch {
	case srcExt && dstExt:
		return Unpriced, ReasonExternalToExternal
	case srcExt || dstExt:
		return Internet, ""
	case src.Zone == "":
		return Unpriced, ReasonSrcZoneUnknown
	case dst.Zone == "":
		return Unpriced, ReasonDstZoneUnknown
	case src.Zone == dst.Zone:
		return SameZone, ""
	}
	sr, ok1 := regions.Region(src.Zone)
	dr, ok2 := regions.Region(dst.Zone)
	if !ok1 || !ok2 {
		return Unpriced, ReasonRegionUnknown
	}
	if sr == dr {
		return InterZone, ""
	}
	return InterRegion, ""
}

// PerByte is the dollars one byte from src to dst costs, all sides together, with its class (and the
// reason when the class is Unpriced, whose price is 0 but must be reported, not shown as free).
//
// Between two in-cluster ends both sides are yours, so out and in prices add (AWS inter-AZ: 0.01 + 0.01).
// Internet traffic leaving the cluster pays the out price, entering it the in price.
func (t *Table) PerByteOf(src, dst Endpoint, regions Regions) (float64, Class, string) {
	class, reason := Classify(src, dst, regions)
	switch class {
	case InterZone, InterRegion:
		return t.PerByte(class, Out) + t.PerByte(class, In), class, ""
	case Internet:
		if dst.Kind == KindExternal {
			return t.PerByte(Internet, Out), class, ""
		}
		return t.PerByte(Internet, In), class, ""
	}
	return 0, class, reason
}
