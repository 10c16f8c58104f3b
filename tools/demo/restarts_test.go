package demo

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkRestarts checks that every disruption asked for happened as a real restart while the application
// sent through the restarted process: a new process id, the signal asked for, datagrams sent between the
// signal and the new process's readiness, a clean exit on SIGTERM, and for a flowserver, agents that
// failed to deliver meanwhile and kept their reports.
func checkRestarts(t *testing.T, d *Demo, p *Phase, asked []Disruption) {
	t.Helper()
	if len(d.Restarts) != len(asked) {
		t.Errorf("%d restarts happened, %d were asked for: %+v", len(d.Restarts), len(asked), d.Restarts)
		return
	}
	starts := map[*Proc]int{}
	for i, x := range asked {
		r := d.Restarts[i]
		var want struct {
			component, of string
			proc          *Proc
		}
		switch x.What {
		case "restart-agent":
			want.component, want.of, want.proc = "flowagent", x.Node, d.Agents[x.Node]
		case "restart-flowserver":
			want.component, want.of, want.proc = "flowserver", x.Zone, d.Servers[x.Zone]
		case "restart-costcalc":
			want.component, want.of, want.proc = "costcalc", x.Cloud, d.Costcalcs[x.Cloud]
		}
		starts[want.proc]++
		name := want.component + "-" + want.of
		if r.Component != want.component || r.Of != want.of || r.Signal != x.Signal {
			t.Errorf("restart %d: %s of %s-%s, asked for %s of %s", i+1, r.Signal, r.Component, r.Of, x.Signal, name)
			continue
		}
		if r.NewPID == r.OldPID || r.NewPID <= 0 {
			t.Errorf("%s of %s: pid %d before and %d after: not restarted", r.Signal, name, r.OldPID, r.NewPID)
		}
		if r.Began.Before(p.Start.At) || r.Ready.After(p.End.At) {
			t.Errorf("%s of %s from %s to %s: outside phase %d (%s to %s)", r.Signal, name, r.Began, r.Ready, p.N, p.Start.At, p.End.At)
		}
		if r.Sent == 0 {
			t.Errorf("%s of %s: the application sent nothing through it between the signal and the new process's readiness: not a restart under traffic", r.Signal, name)
		}
		if r.Signal == "SIGTERM" && r.Exit != 0 {
			t.Errorf("%s of %s: exit code %d, want 0 (a clean shutdown)", r.Signal, name, r.Exit)
		}
		if r.Component == "flowserver" && r.Retries <= 0 {
			t.Errorf("%s of %s: its zone's agents failed no send while it was away: its reports did not wait in the agents", r.Signal, name)
		}
		t.Logf("%s of %s: pid %d → %d, ready %s after the signal, %d datagrams sent through it meanwhile (%.0f sends of its agents failed and were retried)",
			r.Signal, name, r.OldPID, r.NewPID, r.Ready.Sub(r.Began).Round(time.Millisecond), r.Sent, r.Retries)
	}
	kinds := map[string]map[string]bool{}
	for _, r := range d.Restarts {
		if kinds[r.Component] == nil {
			kinds[r.Component] = map[string]bool{}
		}
		kinds[r.Component][r.Signal] = true
	}
	for _, c := range []string{"flowagent", "flowserver", "costcalc"} {
		if len(kinds[c]) == 0 {
			t.Errorf("no %s was restarted", c)
		}
	}
	for proc, n := range starts {
		if proc.Starts != 1+n {
			t.Errorf("%s started %d times, want %d (%d restarts)", proc.Name, proc.Starts, 1+n, n)
		}
	}
}

// checkPhaseBytes compares each flowserver's bytes of one phase, per workload pair, as Prometheus has
// them across every restart, with the generator's ledger of the phase, to the byte; and the zone matrix
// the demo prints with the ledger's zone pairs.
func checkPhaseBytes(t *testing.T, m *Model, p *Phase) {
	t.Helper()
	want := Expected(m, p.Sent())
	zones := map[[2]string]uint64{}
	for _, z := range m.Zones {
		got := Pairs(p.Server(z))
		for k, w := range want[z] {
			zones[[2]string{k.SrcZone, k.DstZone}] += w
			if g := got[k]; g != float64(w) {
				t.Errorf("phase %d, flowserver-%s: %s@%s → %s@%s: %.0f bytes in Prometheus, the generator sent %d (a difference of %.0f)",
					p.N, z, name(k, true), k.SrcZone, name(k, false), k.DstZone, g, w, g-float64(w))
			}
		}
		for k, g := range got {
			if _, ok := want[z][k]; !ok && g != 0 {
				t.Errorf("phase %d, flowserver-%s has %.0f bytes for %+v, which the generator never sent from %s", p.N, z, g, k, z)
			}
		}
	}
	f := FiguresOf(m, p)
	for zz, w := range zones {
		if g := f.Zones[zz]; g != float64(w) {
			t.Errorf("phase %d zone matrix: %s → %s: %.0f bytes, the generator sent %d", p.N, zz[0], zz[1], g, w)
		}
	}
	for zz, g := range f.Zones {
		if _, ok := zones[zz]; !ok && g != 0 {
			t.Errorf("phase %d zone matrix: %s → %s: %.0f bytes the generator never sent", p.N, zz[0], zz[1], g)
		}
	}
}

// checkPhaseDollars compares each costcalc run's dollars of one phase, per cross-zone pair and in total,
// as Prometheus has them across every restart, with the ledger's bytes × the independent price: to the
// cent, and to a relative 1e-9.
func checkPhaseDollars(t *testing.T, m *Model, p *Phase) {
	t.Helper()
	want := Expected(m, p.Sent())
	for _, cloud := range Clouds {
		got := map[PairKey]float64{}
		for _, s := range p.Cost(cloud).Series("zonetoll_cross_zone_cost_dollars_total", nil) {
			got[KeyOf(s.Labels)] += s.Value
		}
		checkPairDollars(t, fmt.Sprintf("phase %d, costcalc %s", p.N, cloud), m, want, cloud, got)
	}
}

// checkPairDollars compares the dollars of each cross-zone pair in got (from Prometheus) and their
// total with want's bytes × the cloud's independent price, each with sameDollars.
func checkPairDollars(t *testing.T, what string, m *Model, want map[string]map[PairKey]uint64, cloud string, got map[PairKey]float64) {
	t.Helper()
	var sum, wantSum float64
	for _, g := range got {
		sum += g
	}
	for _, z := range m.Zones {
		for k, b := range want[z] {
			if !k.CrossZone() {
				continue
			}
			w := float64(b) * crossZonePerByte[cloud]
			wantSum += w
			if g := got[k]; !sameDollars(g, w) {
				t.Errorf("%s: %s@%s → %s@%s $%.12g in Prometheus, independent $%.12g (%d bytes)", what, name(k, true), k.SrcZone, name(k, false), k.DstZone, g, w, b)
			}
		}
	}
	if !sameDollars(sum, wantSum) {
		t.Errorf("%s: $%.12g in Prometheus, independent $%.12g", what, sum, wantSum)
	}
}

// sameDollars: equal to the cent (rounded) and to a relative 1e-9 (the sums differ only in the order
// floats were added).
func sameDollars(got, want float64) bool {
	return math.Round(got*100) == math.Round(want*100) && math.Abs(got-want) <= 1e-9*math.Max(want, 1e-9)
}

// TestCounterTotal: the reset-adjusted total of raw samples, as the demo reads Prometheus.
func TestCounterTotal(t *testing.T) {
	srv := map[string]string{"job": "flowserver", "instance": "a"}
	st := startTimes{"flowserver/a": {1: 100, 2: 100, 3: 100, 4: 200, 5: 200, 6: 300, 7: 300}}
	for _, c := range []struct {
		name     string
		points   []promPoint
		st       startTimes
		from, to int64
		want     float64
	}{
		{"born in the range counts from zero", []promPoint{{1, 5}, {2, 7}, {3, 10}}, nil, 0, 10, 10},
		{"baseline at the start", []promPoint{{1, 5}, {2, 7}, {3, 10}}, nil, 1, 10, 5},
		{"only up to the end", []promPoint{{1, 5}, {2, 7}, {3, 10}}, nil, 1, 2, 2},
		{"a drop is a reset", []promPoint{{1, 5}, {2, 7}, {4, 3}, {5, 4}}, nil, 1, 10, 2 + 3 + 1},
		// The new process counted more than the old one had: only its start time tells.
		{"a restart that grew past the old value", []promPoint{{1, 5}, {3, 7}, {4, 9}, {5, 10}}, st, 1, 10, 2 + 9 + 1},
		{"without start times it looks like growth", []promPoint{{1, 5}, {3, 7}, {4, 9}, {5, 10}}, nil, 1, 10, 2 + 2 + 1},
		{"two restarts", []promPoint{{1, 5}, {3, 7}, {4, 9}, {5, 10}, {6, 1}, {7, 4}}, st, 0, 10, 7 + 9 + 1 + 1 + 3},
		{"a gap while it was down", []promPoint{{1, 5}, {3, 7}, {6, 8}}, st, 0, 10, 7 + 8},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := counterTotal(promSeries{Labels: srv, Points: c.points}, c.st, c.from, c.to)
			if got != c.want {
				t.Errorf("total %v, want %v", got, c.want)
			}
		})
	}
}

// checkDedupeMarks: every flowserver saved its dedupe marks to its zone's ConfigMap without an error in
// any of its lives (as Prometheus has the counters), and each ConfigMap holds them, so the restarted
// server's successor started from its predecessor's marks.
func checkDedupeMarks(t *testing.T, d *Demo, end *Snapshot) {
	t.Helper()
	for _, z := range d.Model.Zones {
		sc := end.Servers[z]
		if v := sc.Sum("zonetoll_flowserver_dedupe_saves_total", map[string]string{"result": "error"}); v != 0 {
			t.Errorf("flowserver-%s failed to save its dedupe marks %v times", z, v)
		}
		if v := sc.Sum("zonetoll_flowserver_dedupe_saves_total", map[string]string{"result": "ok"}); v == 0 {
			t.Errorf("flowserver-%s never saved its dedupe marks", z)
		}
		name := strings.ReplaceAll(DedupeConfigMap, "{zone}", z)
		cm, err := d.Cluster.Client.CoreV1().ConfigMaps(ToolNamespace).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("reading the dedupe marks of %s: %v", z, err)
			continue
		}
		if len(cm.Data)+len(cm.BinaryData) == 0 {
			t.Errorf("ConfigMap %s holds no dedupe marks", name)
		}
	}
}
