// Package advice turns the flowserver's per-Service numbers (client bytes per zone pair, ready endpoints
// per zone, each Service's routing settings and the cluster's Kubernetes version) into the Service view
// and the advice: which Services to switch to same-zone routing, what that saves per month on each
// cloud, what could go wrong, and the exact kubectl command. Compute is a pure function of those
// numbers; reading them from Prometheus is the report package's job.
package advice

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/estimate"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/readable"
)

// Names of the flowserver metrics the advice is computed from (docs/metrics.md).
const (
	TrafficMetric    = "zonetoll_service_traffic_bytes_total"
	ReadyMetric      = "zonetoll_service_ready_endpoints"
	HintedMetric     = "zonetoll_service_hinted_endpoints"
	InfoMetric       = "zonetoll_service_info"
	KubernetesMetric = "zonetoll_kubernetes_info"
)

// TrafficLabels are the labels of TrafficMetric, in Flow's order.
var TrafficLabels = []string{"namespace", "service", "src_namespace", "src_workload", "src_kind", "src_zone", "dst_zone"}

// Overflow is the flowserver's label value for series past its limit.
const Overflow = "__overflow__"

// Defaults of the risk thresholds.
const (
	DefaultOverloadRatio = 2.0
	DefaultMinEndpoints  = 3
)

// Flow is the bytes client workloads of one zone sent to the endpoints of a Service in one zone over the
// range, summed over flowservers.
type Flow struct {
	Namespace       string  `json:"namespace"` // the Service's
	Service         string  `json:"service"`
	ClientNamespace string  `json:"src_namespace"`
	ClientWorkload  string  `json:"src_workload"`
	ClientKind      string  `json:"src_kind"`
	SrcZone         string  `json:"src_zone"`
	DstZone         string  `json:"dst_zone"`
	Bytes           float64 `json:"bytes"`
}

// Hint is how many ready endpoints in Zone the EndpointSlice hints give to clients in ForZone.
type Hint struct {
	Zone      string `json:"zone"`
	ForZone   string `json:"for_zone"`
	Endpoints int    `json:"endpoints"`
}

// ServiceState is what the flowserver's gauges said of one Service at the end of the range.
type ServiceState struct {
	Namespace             string         `json:"namespace"`
	Name                  string         `json:"service"`
	InfoKnown             bool           `json:"info_known"` // zonetoll_service_info was seen
	Type                  string         `json:"type"`
	Headless              bool           `json:"headless"`
	TrafficDistribution   string         `json:"traffic_distribution"`
	TopologyMode          string         `json:"topology_mode"`
	InternalTrafficPolicy string         `json:"internal_traffic_policy"`
	SettingChanged        bool           `json:"setting_changed"` // several settings were seen in the range
	Ready                 map[string]int `json:"ready_endpoints"` // zone → ready endpoints
	Hints                 []Hint         `json:"hints"`
}

// Input is everything Compute needs.
type Input struct {
	Start, End time.Time
	Flows      []Flow
	Services   []ServiceState
	Zones      map[string]string // zone → region, from zonetoll_zone_info
	Tables     []*pricing.Table  // one per cloud shown
	Kubernetes string            // git version, e.g. v1.37.2; "" when unknown
	KubeSource string            // where Kubernetes came from
	Options    Options
}

// Options are the thresholds a user sets.
type Options struct {
	OverloadRatio float64 `json:"overload_ratio"` // a zone's client share / endpoint share above this is a risk
	MinEndpoints  int     `json:"min_endpoints"`  // fewer ready endpoints overall is a risk
}

// Setting is how a Service routes today.
type Setting struct {
	Kind    string `json:"kind"`    // field, annotation or none
	Value   string `json:"value"`   // PreferSameZone, Auto, ...
	Prefers bool   `json:"prefers"` // it already asks for same-zone (or same-node) routing
}

func (s Setting) String() string {
	switch s.Kind {
	case KindField:
		return "trafficDistribution: " + s.Value
	case KindAnnotation:
		return "annotation topology-mode: " + s.Value
	case KindUnknown:
		return "unknown (no " + InfoMetric + ")"
	}
	return "none"
}

// Setting kinds.
const (
	KindField      = "field"
	KindAnnotation = "annotation"
	KindNone       = "none"
	KindUnknown    = "unknown"
)

// ZoneView is one zone of a Service: its ready endpoints and the traffic of its clients.
type ZoneView struct {
	Zone           string  `json:"zone"`
	ReadyEndpoints int     `json:"ready_endpoints"`
	EndpointShare  float64 `json:"endpoint_share"` // of the Service's ready endpoints, 0 to 1
	ClientBytes    float64 `json:"client_bytes"`   // bytes the zone's clients sent to the Service
	ClientShare    float64 `json:"client_share"`   // of the client bytes with a known zone, 0 to 1
	CrossBytes     float64 `json:"cross_bytes"`    // of ClientBytes, to endpoints in other zones
	Savable        bool    `json:"savable"`        // the zone has a local ready endpoint: its crossing would stay in zone
	Hints          string  `json:"hints,omitempty"`
}

// CloudFigures are a Service's dollars on one cloud's preset.
type CloudFigures struct {
	Cloud          string  `json:"cloud"`
	CrossDollars   float64 `json:"cross_zone_dollars"` // in the range
	CrossMonthly   float64 `json:"cross_zone_monthly_dollars"`
	SavingDollars  float64 `json:"saving_dollars"` // in the range
	SavingMonthly  float64 `json:"saving_monthly_dollars"`
	PricePerUnit   float64 `json:"inter_zone_price_per_unit"` // out + in, for the reader
	Unit           string  `json:"unit"`
	UnpricedReason string  `json:"unpriced_reason,omitempty"`
}

// Risk is one thing that can go wrong with same-zone routing.
type Risk struct {
	Kind    string  `json:"kind"` // no_local_endpoint, overload, few_endpoints, single_endpoint
	Zone    string  `json:"zone,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"`
	Message string  `json:"message"`
}

// Risk kinds.
const (
	RiskNoLocalEndpoint = "no_local_endpoint"
	RiskOverload        = "overload"
	RiskFewEndpoints    = "few_endpoints"
	RiskSingleEndpoint  = "single_endpoint"
)

// Recommendation is the setting to apply and how.
type Recommendation struct {
	Setting   string   `json:"setting"`   // e.g. trafficDistribution: PreferSameZone
	Commands  []string `json:"commands"`  // one per Service (a "+" name is several Services)
	Safeguard string   `json:"safeguard"` // what Kubernetes does itself when it goes wrong
}

// Verdicts of a Service.
const (
	VerdictSwitch         = "switch"           // saves money, no risk found
	VerdictSwitchWithCare = "switch_with_care" // saves money, risks listed
	VerdictNoSaving       = "no_saving"        // crosses only from zones without local endpoints
	VerdictAlready        = "already_prefers"  // set already, still crossing
	VerdictNotApplicable  = "not_applicable"   // headless, internalTrafficPolicy Local, overflow
)

// ServiceAdvice is the Service view and the advice for one Service with cross-zone bytes.
type ServiceAdvice struct {
	Namespace             string          `json:"namespace"`
	Service               string          `json:"service"`
	Type                  string          `json:"type"`
	Headless              bool            `json:"headless"`
	InternalTrafficPolicy string          `json:"internal_traffic_policy"`
	Setting               Setting         `json:"setting"`
	HintsSummary          string          `json:"hints"`
	Zones                 []ZoneView      `json:"zones"`
	ReadyEndpoints        int             `json:"ready_endpoints"`
	Bytes                 float64         `json:"bytes"`
	CrossBytes            float64         `json:"cross_zone_bytes"`
	SavableBytes          float64         `json:"savable_bytes"`
	UnknownZoneBytes      float64         `json:"unknown_zone_bytes"` // a client or endpoint zone is unknown: neither same nor cross
	Clouds                []CloudFigures  `json:"clouds"`
	Verdict               string          `json:"verdict"`
	Recommendation        *Recommendation `json:"recommendation,omitempty"`
	Risks                 []Risk          `json:"risks"`
	Reasons               []string        `json:"reasons,omitempty"` // why it still crosses, or why nothing applies
}

// CloudTotal adds up the Services of one cloud.
type CloudTotal struct {
	Cloud         string  `json:"cloud"`
	CrossMonthly  float64 `json:"cross_zone_monthly_dollars"`
	SavingMonthly float64 `json:"saving_monthly_dollars"`
}

// Result is the whole advice.
type Result struct {
	Start         time.Time        `json:"start"`
	End           time.Time        `json:"end"`
	MonthDays     int              `json:"month_days"`
	Kubernetes    string           `json:"kubernetes_version"`
	KubeSource    string           `json:"kubernetes_version_source"`
	Recommended   string           `json:"recommended_setting"`
	RecommendNote string           `json:"recommended_setting_note"`
	Options       Options          `json:"options"`
	Clouds        []string         `json:"clouds"`
	Totals        []CloudTotal     `json:"totals"`
	Services      []ServiceAdvice  `json:"services"` // with cross-zone bytes, most crossing bytes first
	QuietServices int              `json:"services_without_cross_zone_bytes"`
	Notes         []string         `json:"notes,omitempty"`
	Tables        []*pricing.Table `json:"prices"`
}

// Compute makes the advice. Services are listed when their clients sent bytes across zones in the range.
func Compute(in Input) *Result {
	opts := in.Options
	if opts.OverloadRatio <= 0 {
		opts.OverloadRatio = DefaultOverloadRatio
	}
	if opts.MinEndpoints <= 0 {
		opts.MinEndpoints = DefaultMinEndpoints
	}
	r := &Result{Start: in.Start, End: in.End, MonthDays: estimate.MonthDays, Kubernetes: in.Kubernetes, KubeSource: in.KubeSource, Options: opts, Tables: in.Tables}
	rec := RecommendFor(in.Kubernetes)
	r.Recommended, r.RecommendNote = rec.Setting, rec.Note
	scale := float64(estimate.MonthDays*24*time.Hour) / float64(in.End.Sub(in.Start))
	for _, t := range in.Tables {
		r.Clouds = append(r.Clouds, t.Cloud)
	}
	regions := regionsOf(in)

	states := map[string]*ServiceState{}
	for i := range in.Services {
		s := &in.Services[i]
		states[s.Namespace+"/"+s.Name] = s
	}
	type key struct{ ns, svc string }
	flows := map[key][]Flow{}
	var overflow float64
	for _, f := range in.Flows {
		if f.Bytes == 0 {
			continue
		}
		if f.Service == Overflow || f.Namespace == Overflow {
			overflow += f.Bytes
			continue
		}
		k := key{f.Namespace, f.Service}
		flows[k] = append(flows[k], f)
	}
	if overflow > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s bytes were counted in the flowservers' %s series (series limit reached): their Service is unknown and they are in no row below.",
			estimate.Thousands(overflow, 0), Overflow))
	}
	keys := make([]key, 0, len(flows))
	for k := range flows {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].ns+"/"+keys[i].svc < keys[j].ns+"/"+keys[j].svc })
	totals := make([]CloudTotal, len(in.Tables))
	for i, t := range in.Tables {
		totals[i].Cloud = t.Cloud
	}
	unpriced := 0.0
	for _, k := range keys {
		a, up := service(k.ns, k.svc, flows[k], states, in.Tables, regions, scale, opts, rec)
		unpriced += up
		if a.CrossBytes == 0 {
			r.QuietServices++
			continue
		}
		for i := range a.Clouds {
			totals[i].CrossMonthly += a.Clouds[i].CrossMonthly
			if a.Verdict == VerdictSwitch || a.Verdict == VerdictSwitchWithCare {
				totals[i].SavingMonthly += a.Clouds[i].SavingMonthly
			}
		}
		r.Services = append(r.Services, a)
	}
	if unpriced > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%s cross-zone bytes are not priced: a zone's region is unknown (no %s for it and no cloud naming convention matches).",
			estimate.Thousands(unpriced, 0), "zonetoll_zone_info"))
	}
	r.Totals = totals
	sort.SliceStable(r.Services, func(i, j int) bool { return r.Services[i].CrossBytes > r.Services[j].CrossBytes })
	return r
}

// regionsOf merges zone_info with the clouds' naming conventions, so every cloud's figures price the same
// zones the same way (a cluster on one cloud is priced "as if" on the others).
func regionsOf(in Input) map[string]string {
	out := map[string]string{}
	for z, r := range in.Zones {
		out[z] = r
	}
	for _, f := range in.Flows {
		for _, z := range []string{f.SrcZone, f.DstZone} {
			if _, ok := out[z]; ok || z == "" {
				continue
			}
			for _, c := range pricing.Clouds() {
				if reg, ok := (pricing.Regions{Cloud: c}).Region(z); ok {
					out[z] = reg
					break
				}
			}
		}
	}
	return out
}

// stateOf returns the state of a Service; a "+" name (one pod backs several Services) merges its parts:
// endpoints per zone are the largest of the parts', and it prefers the zone only if every part does.
func stateOf(ns, name string, states map[string]*ServiceState) (ServiceState, []string) {
	parts := strings.Split(name, "+")
	if len(parts) == 1 {
		if s := states[ns+"/"+name]; s != nil {
			return *s, parts
		}
		return ServiceState{Namespace: ns, Name: name}, parts
	}
	merged := ServiceState{Namespace: ns, Name: name, Ready: map[string]int{}, InfoKnown: true}
	for _, p := range parts {
		s := states[ns+"/"+p]
		if s == nil {
			merged.InfoKnown = false
			continue
		}
		for z, n := range s.Ready {
			merged.Ready[z] = max(merged.Ready[z], n)
		}
		merged.Headless = merged.Headless || s.Headless
		merged.SettingChanged = merged.SettingChanged || s.SettingChanged
		merged.InfoKnown = merged.InfoKnown && s.InfoKnown
		merged.Type = s.Type
		merged.Hints = append(merged.Hints, s.Hints...)
	}
	return merged, parts
}

func settingOf(s ServiceState) Setting {
	switch {
	case !s.InfoKnown:
		return Setting{Kind: KindUnknown}
	case s.TrafficDistribution != "":
		td := s.TrafficDistribution
		return Setting{Kind: KindField, Value: td, Prefers: td == "PreferSameZone" || td == "PreferClose" || td == "PreferSameNode"}
	case s.TopologyMode != "":
		return Setting{Kind: KindAnnotation, Value: s.TopologyMode, Prefers: s.TopologyMode == "Auto" || s.TopologyMode == "auto"} // the EndpointSlice controller accepts exactly these
	}
	return Setting{Kind: KindNone}
}

func service(ns, name string, flows []Flow, states map[string]*ServiceState, tables []*pricing.Table, regions map[string]string,
	scale float64, opts Options, rec Recommended) (ServiceAdvice, float64) {
	st, parts := stateOf(ns, name, states)
	a := ServiceAdvice{Namespace: ns, Service: name, Type: st.Type, Headless: st.Headless, InternalTrafficPolicy: st.InternalTrafficPolicy, Risks: []Risk{}}
	a.Setting = settingOf(st)
	if len(parts) > 1 {
		a.Setting = Setting{Kind: KindNone}
		prefers := true
		var vals []string
		for _, p := range parts {
			if ps := states[ns+"/"+p]; ps != nil {
				s := settingOf(*ps)
				prefers = prefers && s.Prefers
				vals = append(vals, p+": "+s.String())
			} else {
				prefers = false
				vals = append(vals, p+": unknown")
			}
		}
		a.Setting = Setting{Kind: "several", Value: strings.Join(vals, "; "), Prefers: prefers}
	}

	zones := map[string]*ZoneView{}
	zoneOf := func(z string) *ZoneView {
		v := zones[z]
		if v == nil {
			v = &ZoneView{Zone: z}
			zones[z] = v
		}
		return v
	}
	for z, n := range st.Ready {
		if n > 0 {
			zoneOf(z).ReadyEndpoints = n
			a.ReadyEndpoints += n
		}
	}
	cross := map[[2]string]float64{} // (client zone, endpoint zone) → bytes
	var knownClientBytes float64
	for _, f := range flows {
		a.Bytes += f.Bytes
		zv := zoneOf(f.SrcZone)
		zv.ClientBytes += f.Bytes
		if f.SrcZone != "" {
			knownClientBytes += f.Bytes
		}
		switch {
		case f.SrcZone == "" || f.DstZone == "":
			a.UnknownZoneBytes += f.Bytes
		case f.SrcZone != f.DstZone:
			zv.CrossBytes += f.Bytes
			a.CrossBytes += f.Bytes
			cross[[2]string{f.SrcZone, f.DstZone}] += f.Bytes
		}
	}
	hintsByFor := map[string][]string{}
	for _, h := range st.Hints {
		if h.Endpoints > 0 {
			hintsByFor[h.ForZone] = append(hintsByFor[h.ForZone], fmt.Sprintf("%s (%d)", h.Zone, h.Endpoints))
		}
	}
	for z, v := range zones {
		if a.ReadyEndpoints > 0 {
			v.EndpointShare = float64(v.ReadyEndpoints) / float64(a.ReadyEndpoints)
		}
		if z != "" && knownClientBytes > 0 {
			v.ClientShare = v.ClientBytes / knownClientBytes
		}
		v.Savable = z != "" && v.ReadyEndpoints > 0
		if v.Savable {
			a.SavableBytes += v.CrossBytes
		}
		if h := hintsByFor[z]; len(h) > 0 {
			sort.Strings(h)
			v.Hints = strings.Join(h, ", ")
		}
	}
	switch {
	case len(st.Hints) == 0:
		a.HintsSummary = "no zone hints on the EndpointSlices"
	default:
		var hs []string
		for _, z := range sortedKeys(hintsByFor) {
			hs = append(hs, z+" → "+strings.Join(hintsByFor[z], ", "))
		}
		a.HintsSummary = "hints: " + strings.Join(hs, "; ")
	}
	for _, z := range sortedKeys(zones) {
		a.Zones = append(a.Zones, *zones[z])
	}

	var unpriced float64
	for _, t := range tables {
		cf := CloudFigures{Cloud: t.Cloud, Unit: string(t.Unit), PricePerUnit: t.Row(pricing.InterZone, pricing.Out).Price + t.Row(pricing.InterZone, pricing.In).Price}
		reg := pricing.Regions{Known: regions, Cloud: t.Cloud}
		for _, p := range sortedPairs(cross) {
			perByte, class, reason := t.PerByteOf(pricing.Endpoint{Kind: "pod", Zone: p[0]}, pricing.Endpoint{Kind: "pod", Zone: p[1]}, reg)
			b := cross[p]
			if class == pricing.Unpriced {
				cf.UnpricedReason = reason
				if t == tables[0] {
					unpriced += b
				}
				continue
			}
			cf.CrossDollars += b * perByte
			if zones[p[0]].Savable {
				cf.SavingDollars += b * perByte
			}
		}
		cf.CrossMonthly, cf.SavingMonthly = cf.CrossDollars*scale, cf.SavingDollars*scale
		a.Clouds = append(a.Clouds, cf)
	}

	a.Risks = risks(a, opts)
	switch {
	case len(parts) == 1 && st.Name == Overflow:
		a.Verdict = VerdictNotApplicable
	case st.Headless:
		a.Verdict = VerdictNotApplicable
		a.Reasons = append(a.Reasons, "headless: clients pick endpoints from DNS themselves, so trafficDistribution and topology hints do not apply; keep calls in zone in the client (or give it a ClusterIP Service)")
	case st.InternalTrafficPolicy == "Local":
		a.Verdict = VerdictNotApplicable
		a.Reasons = append(a.Reasons, "internalTrafficPolicy: Local already keeps Service traffic on the client's node; bytes that cross zones did not go through the Service's ClusterIP (direct pod addresses)")
	case a.Setting.Prefers:
		a.Verdict = VerdictAlready
		a.Reasons = stillCrossing(a, st)
	case a.SavableBytes == 0:
		a.Verdict = VerdictNoSaving
		a.Reasons = append(a.Reasons, "every crossing client zone lacks a ready endpoint of its own: same-zone routing would change nothing until the Service has endpoints there")
	default:
		a.Verdict = VerdictSwitch
		for _, r := range a.Risks {
			if r.Kind != RiskNoLocalEndpoint {
				a.Verdict = VerdictSwitchWithCare
			}
		}
		a.Recommendation = recommendation(ns, parts, states, rec)
	}
	return a, unpriced
}

func stillCrossing(a ServiceAdvice, st ServiceState) []string {
	var out []string
	if st.SettingChanged {
		out = append(out, "the setting changed during the range: bytes sent before the change crossed under the old setting")
	}
	auto := a.Setting.Kind == KindAnnotation
	if auto && len(st.Hints) == 0 {
		out = append(out, "topology-mode Auto but no zone hints on the EndpointSlices: the EndpointSlice controller refused to allocate them (endpoints not spread in proportion to the zones' allocatable CPU, fewer endpoints than zones, or a zone without allocatable CPU), so kube-proxy routes cluster-wide")
	}
	for _, z := range a.Zones {
		if z.Zone == "" || z.CrossBytes == 0 {
			continue
		}
		switch {
		case z.ReadyEndpoints == 0:
			out = append(out, fmt.Sprintf("zone %s has no ready endpoint: its clients' %s go to other zones (Kubernetes falls back to every endpoint)", z.Zone, bytesText(z.CrossBytes)))
		case auto && len(st.Hints) > 0 && z.Hints != "" && !strings.Contains(z.Hints, z.Zone+" ("):
			out = append(out, fmt.Sprintf("the hints send zone %s's clients to %s, not to its own %d endpoint(s): the controller balanced the allocation", z.Zone, z.Hints, z.ReadyEndpoints))
		default:
			out = append(out, fmt.Sprintf("zone %s has %d ready endpoint(s) yet its clients sent %s across zones: traffic that does not go through the Service (direct pod addresses, a client-side balancer), or a data plane without topology support (a kube-proxy replacement that ignores trafficDistribution, or kube-proxy older than the setting)",
				z.Zone, z.ReadyEndpoints, bytesText(z.CrossBytes)))
		}
	}
	return out
}

func risks(a ServiceAdvice, opts Options) []Risk {
	out := []Risk{}
	for _, z := range a.Zones {
		if z.Zone == "" || z.ClientBytes == 0 {
			continue
		}
		if z.ReadyEndpoints == 0 {
			out = append(out, Risk{Kind: RiskNoLocalEndpoint, Zone: z.Zone, Message: fmt.Sprintf("zone %s has clients (%s, %s of the traffic) but no ready endpoint: they keep crossing (not in the saving)",
				z.Zone, bytesText(z.ClientBytes), pct(z.ClientShare))})
		}
	}
	for _, z := range a.Zones {
		if z.Zone == "" || z.ClientBytes == 0 || z.ReadyEndpoints == 0 {
			continue
		}
		if ratio := z.ClientShare / z.EndpointShare; ratio > opts.OverloadRatio {
			out = append(out, Risk{Kind: RiskOverload, Zone: z.Zone, Ratio: ratio, Message: fmt.Sprintf("would concentrate load: zone %s's clients send %s of the traffic onto %s of the ready endpoints (%d of %d), ratio %s, above %s",
				z.Zone, pct(z.ClientShare), pct(z.EndpointShare), z.ReadyEndpoints, a.ReadyEndpoints, strconv.FormatFloat(math.Round(ratio*100)/100, 'f', -1, 64), strconv.FormatFloat(opts.OverloadRatio, 'f', -1, 64))})
		}
	}
	if a.ReadyEndpoints < opts.MinEndpoints {
		out = append(out, Risk{Kind: RiskFewEndpoints, Message: fmt.Sprintf("only %d ready endpoint(s) in all, fewer than %d: one lost pod shifts a whole zone's calls", a.ReadyEndpoints, opts.MinEndpoints)})
	}
	for _, z := range a.Zones {
		if z.Zone != "" && z.ReadyEndpoints == 1 && z.ClientBytes > 0 {
			out = append(out, Risk{Kind: RiskSingleEndpoint, Zone: z.Zone, Message: fmt.Sprintf("zone %s has a single ready endpoint, which alone would serve its clients (%s of the traffic)", z.Zone, pct(z.ClientShare))})
		}
	}
	return out
}

func recommendation(ns string, parts []string, states map[string]*ServiceState, rec Recommended) *Recommendation {
	r := &Recommendation{Setting: rec.Setting, Safeguard: rec.Safeguard}
	for _, p := range parts {
		if s := states[ns+"/"+p]; s != nil && settingOf(*s).Prefers {
			continue
		}
		r.Commands = append(r.Commands, rec.Command(ns, p))
	}
	return r
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sortedPairs(m map[[2]string]float64) [][2]string {
	var out [][2]string
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0]+"\xff"+out[i][1] < out[j][0]+"\xff"+out[j][1] })
	return out
}

func pct(f float64) string {
	return strconv.FormatFloat(math.Round(f*1000)/10, 'f', -1, 64) + " %"
}

func bytesText(b float64) string { return readable.Size(b) }
