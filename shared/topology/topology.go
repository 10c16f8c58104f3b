// Package topology names the well-known zone and region labels and reads a node's location from them.
package topology

// The labels the cloud providers' node controllers set, and that zonelabeler copies onto pods.
const (
	ZoneLabel   = "topology.kubernetes.io/zone"
	RegionLabel = "topology.kubernetes.io/region"

	// Deprecated beta labels, still set on nodes of some old clusters; read only as a fallback.
	BetaZoneLabel   = "failure-domain.beta.kubernetes.io/zone"
	BetaRegionLabel = "failure-domain.beta.kubernetes.io/region"
)

// Location is where a node (and so every pod on it) runs. An empty field means unknown.
type Location struct {
	Zone   string
	Region string
}

// LocationOf reads a node's location from its labels, preferring the GA labels over the beta ones.
func LocationOf(labels map[string]string) Location {
	return Location{Zone: first(labels, ZoneLabel, BetaZoneLabel), Region: first(labels, RegionLabel, BetaRegionLabel)}
}

// Known reports whether the zone is known; the region alone is not enough to place traffic.
func (l Location) Known() bool { return l.Zone != "" }

// CrossesZone reports whether traffic from l to o crosses a zone boundary. Traffic with an unknown end
// is not called cross-zone: zonetoll never bills a guess.
func (l Location) CrossesZone(o Location) bool {
	return l.Known() && o.Known() && (l.Zone != o.Zone || l.Region != o.Region)
}

// CrossesRegion reports whether traffic from l to o crosses a region boundary, with both regions known.
func (l Location) CrossesRegion(o Location) bool {
	return l.Region != "" && o.Region != "" && l.Region != o.Region
}

func first(labels map[string]string, keys ...string) string {
	for _, k := range keys {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return ""
}
