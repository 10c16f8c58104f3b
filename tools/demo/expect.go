package demo

import (
	"net/netip"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

// PairKey is a workload pair as the flowserver labels zonetoll_traffic_bytes_total.
type PairKey struct {
	SrcNamespace, SrcWorkload, SrcKind, SrcZone string
	DstNamespace, DstWorkload, DstKind, DstZone string
}

// KeyOf reads a PairKey from a traffic series' labels.
func KeyOf(l map[string]string) PairKey {
	return PairKey{l["src_namespace"], l["src_workload"], l["src_kind"], l["src_zone"],
		l["dst_namespace"], l["dst_workload"], l["dst_kind"], l["dst_zone"]}
}

// CrossZone reports whether both zones are known and differ.
func (k PairKey) CrossZone() bool {
	return k.SrcZone != "" && k.DstZone != "" && k.SrcZone != k.DstZone
}

// Expected turns the generator's counts into the bytes each zone's flowserver must attribute to each
// workload pair: a packet is counted on its source's node (only if the source is a node or a pod on one),
// reported to that node's zone's server, with its layer-3 length (payload + UDP + IP header).
func Expected(m *Model, sent map[[2]netip.Addr]PairCount) map[string]map[PairKey]uint64 {
	out := map[string]map[PairKey]uint64{}
	for k, c := range sent {
		src, dst := m.ByAddr[k[0]], m.ByAddr[k[1]]
		if src.Node == nil {
			continue // the managed cache's answers: no agent runs where they leave from
		}
		key := PairKey{src.Namespace, src.Workload, src.Kind, src.Zone, dst.Namespace, dst.Workload, dst.Kind, dst.Zone}
		z := src.Node.Zone
		if out[z] == nil {
			out[z] = map[PairKey]uint64{}
		}
		out[z][key] += L3Bytes(k[0], c)
	}
	return out
}

// Pairs reads a flowserver scrape's zonetoll_traffic_bytes_total by pair.
func Pairs(sc metricstest.Samples) map[PairKey]float64 {
	out := map[PairKey]float64{}
	for _, s := range sc.Series("zonetoll_traffic_bytes_total", nil) {
		out[KeyOf(s.Labels)] += s.Value
	}
	return out
}
