package report

import (
	"sort"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/estimate"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

// InternetZone names the outside world in zone pairs.
const InternetZone = "internet"

// Pair is the traffic of one source workload to one destination workload over the range.
type Pair struct {
	Src     pricing.Endpoint `json:"src"`
	Dst     pricing.Endpoint `json:"dst"`
	Class   pricing.Class    `json:"class"`
	Reason  string           `json:"reason,omitempty"` // why an unpriced pair is unpriced
	Bytes   float64          `json:"bytes"`
	Dollars float64          `json:"dollars"`
	Monthly float64          `json:"monthly_dollars"`
}

// ZonePair is the traffic from one zone to another (or to or from the internet) over the range.
type ZonePair struct {
	Src     string        `json:"src_zone"`
	Dst     string        `json:"dst_zone"`
	Class   pricing.Class `json:"class"`
	Bytes   float64       `json:"bytes"`
	Dollars float64       `json:"dollars"`
	Monthly float64       `json:"monthly_dollars"`
}

// ClassTotal adds up one pricing class.
type ClassTotal struct {
	Class   pricing.Class `json:"class"`
	Bytes   float64       `json:"bytes"`
	Dollars float64       `json:"dollars"`
}

// Report is everything a format prints.
type Report struct {
	Prometheus string         `json:"prometheus"`
	Method     string         `json:"method"`
	Start      time.Time      `json:"start"`
	End        time.Time      `json:"end"`
	Prices     *pricing.Table `json:"prices"`
	MonthDays  int            `json:"month_days"`
	Total      float64        `json:"total_dollars"`
	Monthly    float64        `json:"monthly_projection_dollars"`
	Classes    []ClassTotal   `json:"classes"`
	Pairs      []Pair         `json:"top_pairs"`
	PairCount  int            `json:"pair_count"` // priced crossing pairs before the top cut
	ZonePairs  []ZonePair     `json:"zone_pairs"` // every zone pair, same-zone included
	Zones      []string       `json:"zones"`      // heat map axes: every zone seen, then internet
	Unpriced   []Pair         `json:"unpriced"`
	// Services is the Service view and advice when the range has per-Service metrics; otherwise
	// NoServices says what was missing.
	Services   *advice.Result `json:"services,omitempty"`
	NoServices string         `json:"no_services,omitempty"`
}

// NoServiceData is the line shown when the range has no per-Service metrics.
const NoServiceData = "No Service data in this range: no zonetoll_service_traffic_bytes_total series (flowservers from before issue #18, or no traffic through Services yet)."

// Compute prices data. Only pairs that cross a zone, region or the cluster's edge are ranked; zone pairs
// include same-zone traffic so the heat map shows where traffic stays.
func Compute(data *Data, table *pricing.Table, start, end time.Time, top int) *Report {
	r := &Report{Start: start, End: end, Prices: table, MonthDays: estimate.MonthDays, NoServices: NoServiceData}
	regions := pricing.Regions{Known: data.Zones, Cloud: table.Cloud}
	scale := float64(estimate.MonthDays*24*time.Hour) / float64(end.Sub(start))
	classes := map[pricing.Class]*ClassTotal{}
	zonePairs := map[[2]string]*ZonePair{}
	zones := map[string]bool{}
	var pairs []Pair
	for _, t := range data.Traffic {
		if t.Bytes == 0 {
			continue
		}
		l := t.Labels
		src := pricing.Endpoint{Namespace: l[0], Workload: l[1], Kind: l[2], Zone: l[3]}
		dst := pricing.Endpoint{Namespace: l[4], Workload: l[5], Kind: l[6], Zone: l[7]}
		perByte, class, reason := table.PerByteOf(src, dst, regions)
		p := Pair{Src: src, Dst: dst, Class: class, Reason: reason, Bytes: t.Bytes, Dollars: t.Bytes * perByte}
		p.Monthly = p.Dollars * scale
		ct := classes[class]
		if ct == nil {
			ct = &ClassTotal{Class: class}
			classes[class] = ct
		}
		ct.Bytes += p.Bytes
		ct.Dollars += p.Dollars
		r.Total += p.Dollars
		if class == pricing.Unpriced {
			r.Unpriced = append(r.Unpriced, p)
			continue
		}
		sz, dz := zoneName(src), zoneName(dst)
		zones[sz], zones[dz] = true, true
		zp := zonePairs[[2]string{sz, dz}]
		if zp == nil {
			zp = &ZonePair{Src: sz, Dst: dz, Class: class}
			zonePairs[[2]string{sz, dz}] = zp
		}
		zp.Bytes += p.Bytes
		zp.Dollars += p.Dollars
		zp.Monthly += p.Monthly
		if class != pricing.SameZone {
			pairs = append(pairs, p)
		}
	}
	r.Monthly = r.Total * scale
	for _, c := range []pricing.Class{pricing.SameZone, pricing.InterZone, pricing.InterRegion, pricing.Internet, pricing.Unpriced} {
		if ct := classes[c]; ct != nil {
			r.Classes = append(r.Classes, *ct)
		}
	}
	sort.SliceStable(pairs, func(i, j int) bool { return byCost(pairs[i].Dollars, pairs[i].Bytes, pairs[j].Dollars, pairs[j].Bytes) })
	r.PairCount = len(pairs)
	if top > 0 && len(pairs) > top {
		pairs = pairs[:top]
	}
	r.Pairs = pairs
	for _, zp := range zonePairs {
		r.ZonePairs = append(r.ZonePairs, *zp)
	}
	sort.Slice(r.ZonePairs, func(i, j int) bool {
		a, b := r.ZonePairs[i], r.ZonePairs[j]
		if a.Dollars != b.Dollars || a.Bytes != b.Bytes {
			return byCost(a.Dollars, a.Bytes, b.Dollars, b.Bytes)
		}
		return a.Src+"\xff"+a.Dst < b.Src+"\xff"+b.Dst
	})
	sort.SliceStable(r.Unpriced, func(i, j int) bool { return r.Unpriced[i].Bytes > r.Unpriced[j].Bytes })
	for z := range zones {
		if z != InternetZone {
			r.Zones = append(r.Zones, z)
		}
	}
	sort.Strings(r.Zones)
	if zones[InternetZone] {
		r.Zones = append(r.Zones, InternetZone)
	}
	return r
}

func byCost(da, ba, db, bb float64) bool {
	if da != db {
		return da > db
	}
	return ba > bb
}

func zoneName(e pricing.Endpoint) string {
	if e.Kind == pricing.KindExternal {
		return InternetZone
	}
	return e.Zone
}

// ZonePair returns the zone pair src → dst and whether there was traffic.
func (r *Report) ZonePair(src, dst string) (ZonePair, bool) {
	for _, zp := range r.ZonePairs {
		if zp.Src == src && zp.Dst == dst {
			return zp, true
		}
	}
	return ZonePair{}, false
}
