package report

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
)

var infoLabels = []string{"namespace", "service", "type", "headless", "traffic_distribution", "topology_mode", "internal_traffic_policy"}

// ReadServices reads what the advice is computed from over [start, end]: the per-Service client traffic
// (with the Source's method), and the Service gauges as they last were (max over the flowservers, which
// all export the same gauges). found is false when the range has no per-Service traffic at all (a
// flowserver from before issue #18, or no Service traffic yet); the error is for a failing query.
func (s *Source) ReadServices(ctx context.Context, start, end time.Time) (in advice.Input, found bool, err error) {
	in = advice.Input{Start: start, End: end}
	counters, err := s.Increase(ctx, advice.TrafficMetric, advice.TrafficLabels, start, end)
	if err != nil {
		return in, false, err
	}
	for _, c := range counters {
		l := c.Labels
		in.Flows = append(in.Flows, advice.Flow{Namespace: l[0], Service: l[1], ClientNamespace: l[2], ClientWorkload: l[3], ClientKind: l[4], SrcZone: l[5], DstZone: l[6], Bytes: c.Value})
	}
	if len(in.Flows) == 0 {
		return in, false, nil
	}
	states := map[string]*advice.ServiceState{}
	stateOf := func(m model.Metric) *advice.ServiceState {
		ns, name := string(m["namespace"]), string(m["service"])
		st := states[ns+"/"+name]
		if st == nil {
			st = &advice.ServiceState{Namespace: ns, Name: name, Ready: map[string]int{}}
			states[ns+"/"+name] = st
		}
		return st
	}
	metrics, values, err := s.Latest(ctx, advice.ReadyMetric, []string{"namespace", "service", "zone"}, 2, start, end)
	if err != nil {
		return in, false, err
	}
	for i, m := range metrics {
		stateOf(m).Ready[string(m["zone"])] = int(values[i])
	}
	metrics, values, err = s.Latest(ctx, advice.HintedMetric, []string{"namespace", "service", "zone", "for_zone"}, 2, start, end)
	if err != nil {
		return in, false, err
	}
	for i, m := range metrics {
		st := stateOf(m)
		st.Hints = append(st.Hints, advice.Hint{Zone: string(m["zone"]), ForZone: string(m["for_zone"]), Endpoints: int(values[i])})
	}
	metrics, _, err = s.Latest(ctx, advice.InfoMetric, infoLabels, 2, start, end)
	if err != nil {
		return in, false, err
	}
	sort.Slice(metrics, func(i, j int) bool { return metrics[i].String() < metrics[j].String() })
	for _, m := range metrics {
		st := stateOf(m)
		if st.InfoKnown {
			st.SettingChanged = true // two settings in the last minutes: the later one in label order wins
		}
		st.InfoKnown, st.Type, st.Headless = true, string(m["type"]), m["headless"] == "true"
		st.TrafficDistribution, st.TopologyMode, st.InternalTrafficPolicy = string(m["traffic_distribution"]), string(m["topology_mode"]), string(m["internal_traffic_policy"])
	}
	// Several settings of one Service over the whole range: some bytes crossed under another one.
	v, err := s.query(ctx, fmt.Sprintf("count by (namespace, service) (max by (%s) (last_over_time(%s[%s]))) > 1",
		joinLabels(infoLabels), advice.InfoMetric, promDuration(end.Sub(start))), end)
	if err != nil {
		return in, false, err
	}
	if vec, ok := v.(model.Vector); ok {
		for _, smp := range vec {
			if st := states[string(smp.Metric["namespace"])+"/"+string(smp.Metric["service"])]; st != nil {
				st.SettingChanged = true
			}
		}
	}
	for _, k := range sortedStates(states) {
		in.Services = append(in.Services, *states[k])
	}
	metrics, _, err = s.Latest(ctx, advice.KubernetesMetric, []string{"git_version"}, 0, start, end)
	if err != nil {
		return in, false, err
	}
	// Several API server versions (an upgrade in the range): advise for the oldest, which must accept it.
	oldest := 1 << 30
	for _, m := range metrics {
		gv := string(m["git_version"])
		if minor, ok := advice.Minor(gv); ok && minor < oldest {
			oldest, in.Kubernetes = minor, gv
			in.KubeSource = advice.KubernetesMetric
		}
	}
	if in.Zones, err = s.ZoneRegions(ctx, start, end); err != nil {
		return in, false, err
	}
	return in, true, nil
}

func sortedStates(m map[string]*advice.ServiceState) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func joinLabels(l []string) string {
	out := ""
	for i, s := range l {
		if i > 0 {
			out += ", "
		}
		out += s
	}
	return out
}
