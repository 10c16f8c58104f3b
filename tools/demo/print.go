package demo

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// month is costcalc's month (docs/costcalc.md: 30 days), so the demo's projections match its reports.
const month = 30 * 24 * time.Hour

// PairFigures are one workload pair's bytes in a phase and its cost per cloud projected to a month.
type PairFigures struct {
	Key          PairKey
	Bytes        float64
	MonthDollars map[string]float64
}

// Figures sums a phase over every flowserver and costcalc.
type Figures struct {
	Duration   time.Duration
	Zones      map[[2]string]float64 // zone matrix, bytes
	Pairs      []PairFigures         // every pair, most bytes first
	CrossBytes float64
	// MonthDollars is the whole cluster's cost per cloud at the phase's rate, for a month.
	MonthDollars map[string]float64
}

// FiguresOf computes the figures of a phase.
func FiguresOf(m *Model, p *Phase) *Figures {
	f := &Figures{Duration: p.Duration(), Zones: map[[2]string]float64{}, MonthDollars: map[string]float64{}}
	scale := float64(month) / float64(f.Duration)
	pairs := map[PairKey]*PairFigures{}
	for _, z := range m.Zones {
		sc := p.Server(z)
		for _, s := range sc.Series("zonetoll_zone_traffic_bytes_total", nil) {
			f.Zones[[2]string{s.Labels["src_zone"], s.Labels["dst_zone"]}] += s.Value
		}
		for k, v := range Pairs(sc) {
			if v == 0 {
				continue
			}
			if pairs[k] == nil {
				pairs[k] = &PairFigures{Key: k, MonthDollars: map[string]float64{}}
			}
			pairs[k].Bytes += v
			if k.CrossZone() {
				f.CrossBytes += v
			}
		}
	}
	for _, cloud := range Clouds {
		for _, s := range p.Cost(cloud).Series("zonetoll_cross_zone_cost_dollars_total", nil) {
			k := KeyOf(s.Labels)
			if pairs[k] == nil {
				pairs[k] = &PairFigures{Key: k, MonthDollars: map[string]float64{}}
			}
			pairs[k].MonthDollars[cloud] += s.Value * scale
			f.MonthDollars[cloud] += s.Value * scale
		}
	}
	for _, v := range pairs {
		f.Pairs = append(f.Pairs, *v)
	}
	sort.Slice(f.Pairs, func(i, j int) bool {
		if f.Pairs[i].Bytes != f.Pairs[j].Bytes {
			return f.Pairs[i].Bytes > f.Pairs[j].Bytes
		}
		return name(f.Pairs[i].Key, true) < name(f.Pairs[j].Key, true)
	})
	return f
}

func name(k PairKey, src bool) string {
	ns, wl, kind := k.DstNamespace, k.DstWorkload, k.DstKind
	if src {
		ns, wl, kind = k.SrcNamespace, k.SrcWorkload, k.SrcKind
	}
	switch {
	case kind == "external":
		return "external"
	case strings.HasPrefix(kind, "cidr:"):
		return kind
	case ns == "":
		return kind + "/" + wl
	}
	return ns + "/" + wl + " (" + kind + ")"
}

// PrintPhase writes what a user looks at after a phase: the zone matrix, the top cross-zone workload
// pairs in bytes and dollars per month, and each workload's cross-zone share.
func PrintPhase(w io.Writer, m *Model, title string, f *Figures) {
	fmt.Fprintf(w, "\n=== %s (%s of traffic) ===\n", title, f.Duration.Round(100*time.Millisecond))
	fmt.Fprintf(w, "\nZone matrix (bytes sent, rows send, columns receive; counted by the flowservers):\n")
	cols := append([]string{}, m.Zones...)
	head := strings.Join(m.Zones, "\t")
	for _, s := range m.Zones {
		if f.Zones[[2]string{s, ""}] != 0 {
			cols, head = append(cols, ""), head+"\toutside (no zone)"
			break
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "from \\ to\t%s\t\n", head)
	for _, s := range m.Zones {
		fmt.Fprintf(tw, "%s\t", s)
		for _, d := range cols {
			fmt.Fprintf(tw, "%s\t", human(f.Zones[[2]string{s, d}]))
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nTop cross-zone workload pairs (cost at this rate for a 30-day month):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "SOURCE\tZONE\tDESTINATION\tZONE\tBYTES\tAWS $/MONTH\tGCP $/MONTH\tAZURE $/MONTH\n")
	shown := 0
	for _, p := range f.Pairs {
		if !p.Key.CrossZone() || p.Bytes == 0 || shown == 10 {
			continue
		}
		shown++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name(p.Key, true), p.Key.SrcZone, name(p.Key, false), p.Key.DstZone,
			human(p.Bytes), dollars(p.MonthDollars["aws"]), dollars(p.MonthDollars["gcp"]), dollars(p.MonthDollars["azure"]))
	}
	tw.Flush()
	if shown == 0 {
		fmt.Fprintln(w, "  (none: every byte stayed in its zone)")
	}
	fmt.Fprintf(w, "Whole cluster: %s crossed zones; AWS %s, GCP %s, Azure %s per month at this rate\n",
		human(f.CrossBytes), dollars(f.MonthDollars["aws"]), dollars(f.MonthDollars["gcp"]), dollars(f.MonthDollars["azure"]))
	fmt.Fprintf(w, "(AWS bills both sides of a zone crossing, $0.01/GiB each; GCP the sender, $0.01/GiB; Azure nothing between zones.)\n")

	fmt.Fprintf(w, "\nCross-zone share of what each workload sends:\n")
	type share struct {
		name         string
		cross, total float64
	}
	by := map[string]*share{}
	for _, p := range f.Pairs {
		n := name(p.Key, true)
		if by[n] == nil {
			by[n] = &share{name: n}
		}
		by[n].total += p.Bytes
		if p.Key.CrossZone() {
			by[n].cross += p.Bytes
		}
	}
	var shares []*share
	for _, s := range by {
		shares = append(shares, s)
	}
	sort.Slice(shares, func(i, j int) bool { return shares[i].name < shares[j].name })
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "WORKLOAD\tSENT\tCROSS-ZONE\tSHARE\n")
	for _, s := range shares {
		if s.total == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f%%\n", s.name, human(s.total), human(s.cross), 100*s.cross/s.total)
	}
	tw.Flush()
}

// PrintDrop compares the cross-zone rate and cost of two phases.
func PrintDrop(w io.Writer, before, after *Figures) {
	rb := before.CrossBytes / before.Duration.Seconds()
	ra := after.CrossBytes / after.Duration.Seconds()
	fmt.Fprintf(w, "\n=== What keeping the frontend's calls in its zone changed ===\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tPHASE 1\tPHASE 2\tCHANGE\n")
	fmt.Fprintf(tw, "cross-zone bytes/s\t%s/s\t%s/s\t%s\n", human(rb), human(ra), pct(rb, ra))
	for _, c := range Clouds {
		fmt.Fprintf(tw, "%s $/month\t%s\t%s\t%s\n", strings.ToUpper(c), dollars(before.MonthDollars[c]), dollars(after.MonthDollars[c]), pct(before.MonthDollars[c], after.MonthDollars[c]))
	}
	tw.Flush()
}

func pct(a, b float64) string {
	if a == 0 {
		return "-"
	}
	return fmt.Sprintf("%+.0f%%", 100*(b-a)/a)
}

func human(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.2f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

func dollars(d float64) string {
	if d == 0 {
		return "$0"
	}
	return fmt.Sprintf("$%.2f", d)
}

// PrintAdvice writes `costcalc advise`'s table for phase 1 under a heading: which Service carries the
// frontend's cross-zone calls, what same-zone routing would save, and its risks.
func PrintAdvice(w io.Writer, table []byte) {
	fmt.Fprintf(w, "\n=== Which Service to switch to same-zone routing (costcalc advise over phase 1, from Prometheus) ===\n\n")
	w.Write(table)
}

// PrintSaving sets the advice's predicted saving for the api Service (costcalc advise --format json over
// phase 1) beside the measured one (phase 1's monthly cross-zone cost minus phase 2's), per cloud. The
// advice prices its whole range (the phase and the wait for its last reports); here its dollars are put
// on the phases' time base (their sending time), as the measured figures are.
func PrintSaving(w io.Writer, m *Model, before, after *Figures, adviceJSON []byte) error {
	api, err := apiAdvice(m, adviceJSON)
	if err != nil {
		return err
	}
	predicted := map[string]float64{}
	for _, c := range api.Clouds {
		predicted[c.Cloud] = c.SavingDollars * float64(month) / float64(before.Duration)
	}
	fmt.Fprintf(w, "\n=== Predicted and measured saving of the api Service's patch (per month at the phases' rates) ===\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tBEFORE\tAFTER\tPREDICTED SAVING\tMEASURED SAVING\tMEASURED/PREDICTED\n")
	for _, c := range Clouds {
		measured := before.MonthDollars[c] - after.MonthDollars[c]
		ratio := "-"
		if predicted[c] > 0 {
			ratio = fmt.Sprintf("%.0f%%", 100*measured/predicted[c])
		}
		fmt.Fprintf(tw, "%s $/month\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(c), dollars(before.MonthDollars[c]), dollars(after.MonthDollars[c]), dollars(predicted[c]), dollars(measured), ratio)
	}
	tw.Flush()
	fmt.Fprintf(w, "The prediction counts every cross-zone byte to and from the api pods whose client zone has an api pod;\n"+
		"the patch moves only the calls made through the Service (the frontend's). Traffic that reaches the api\n"+
		"pods by their own addresses (the metrics agent's scrapes, postgres' answers, on the same port) keeps crossing.\n")
	return nil
}

// RoutedTo counts, from a phase's ledger, the frontend's calls through the api Service by the frontend's
// zone and the zone of the api pod that answered (the generator records the endpoint each call reached).
func RoutedTo(m *Model, sent map[[2]netip.Addr]PairCount) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	for k, c := range sent {
		src, dst := m.ByAddr[k[0]], m.ByAddr[k[1]]
		if src.Workload != "frontend" || dst.Workload != "api" {
			continue
		}
		if out[src.Zone] == nil {
			out[src.Zone] = map[string]uint64{}
		}
		out[src.Zone][dst.Zone] += c.Packets
	}
	return out
}

// PrintRisk sets what the advice said of zone's single api endpoint beside what happened when that
// endpoint turned not ready (phase p): where each zone's frontend calls went, by the generator's ledger,
// and what zonetoll counted and priced of the zone's frontend crossing zones again.
func PrintRisk(w io.Writer, m *Model, p *Phase, f *Figures, zone string, adviceJSON []byte) error {
	api, err := apiAdvice(m, adviceJSON)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n=== The advice's risk, played: the only api pod of %s turned not ready ===\n", zone)
	for _, r := range api.Risks {
		if r.Zone == zone && r.Kind == "single_endpoint" {
			fmt.Fprintf(w, "The advice said: %s\n", r.Message)
		}
	}
	if api.Recommendation != nil && api.Recommendation.Safeguard != "" {
		fmt.Fprintf(w, "and: %s\n", api.Recommendation.Safeguard)
	}
	routed := RoutedTo(m, p.Sent())
	fmt.Fprintf(w, "\nThe frontend's calls through the api Service (generator's ledger: the api pod that answered):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "FRONTEND IN\tCALLS")
	for _, z := range m.Zones {
		fmt.Fprintf(tw, "\tTO %s", z)
	}
	fmt.Fprintf(tw, "\tCROSSED ZONES\n")
	for _, z := range m.Zones {
		var calls, cross uint64
		for z2, n := range routed[z] {
			calls += n
			if z2 != z {
				cross += n
			}
		}
		fmt.Fprintf(tw, "%s\t%d", z, calls)
		for _, z2 := range m.Zones {
			fmt.Fprintf(tw, "\t%d", routed[z][z2])
		}
		share := "-"
		if calls > 0 {
			share = fmt.Sprintf("%d (%.0f%%)", cross, 100*float64(cross)/float64(calls))
		}
		fmt.Fprintf(tw, "\t%s\n", share)
	}
	tw.Flush()
	var bytes float64
	dollarsOf := map[string]float64{}
	for _, pf := range f.Pairs {
		k := pf.Key
		if k.CrossZone() && (k.SrcWorkload == "frontend" && k.SrcZone == zone && k.DstWorkload == "api" || k.SrcWorkload == "api" && k.DstWorkload == "frontend" && k.DstZone == zone) {
			bytes += pf.Bytes
			for c, d := range pf.MonthDollars {
				dollarsOf[c] += d
			}
		}
	}
	fmt.Fprintf(w, "zonetoll counted %s of %s's frontend calls and their answers crossing zones again: AWS %s, GCP %s per month at this rate.\n",
		human(bytes), zone, dollars(dollarsOf["aws"]), dollars(dollarsOf["gcp"]))
	return nil
}
