package demo

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAPIAdvice(t *testing.T) {
	m := NewModel("ztdemo-1-")
	for _, tt := range []struct {
		name, json, err string
		setting         string
	}{
		{name: "api listed", json: `{"services":[{"namespace":"shop","service":"postgres"},{"namespace":"shop","service":"api","recommendation":{"setting":"trafficDistribution: PreferSameZone"}}]}`,
			setting: "trafficDistribution: PreferSameZone"},
		{name: "api of another namespace", json: `{"services":[{"namespace":"other","service":"api"}]}`, err: "does not list shop/api"},
		{name: "not JSON", json: `Service advice, 2026-12-07`, err: "reading the advice: invalid character"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, err := apiAdvice(m, []byte(tt.json))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Recommendation == nil || a.Recommendation.Setting != tt.setting {
				t.Errorf("recommendation %+v, want %q", a.Recommendation, tt.setting)
			}
		})
	}
}

// The risk section quotes the advice's risk for the zone and its safeguard, and counts where each zone's
// frontend calls went from the phase's ledger (calls are datagrams from a frontend to an api pod).
func TestPrintRisk(t *testing.T) {
	m := NewModel("ztdemo-1-")
	a, b, c := m.Zones[0], m.Zones[1], m.Zones[2]
	fe := func(z string) netip.Addr { return m.Pod("frontend", z).IPv4 }
	api := func(z string) netip.Addr { return m.Pod("api", z).IPv4 }
	start := map[[2]netip.Addr]PairCount{{fe(c), api(c)}: {Packets: 50, Payload: 15000}}
	end := map[[2]netip.Addr]PairCount{
		{fe(a), api(a)}: {Packets: 100, Payload: 30000},
		{fe(c), api(c)}: {Packets: 50, Payload: 15000}, // before the phase: not counted
		{fe(c), api(a)}: {Packets: 47, Payload: 14100},
		{fe(c), api(b)}: {Packets: 53, Payload: 15900},
		{api(a), fe(c)}: {Packets: 47, Payload: 56400}, // an answer, not a call
	}
	p := &Phase{N: 3, Start: &Snapshot{Sent: start}, End: &Snapshot{Sent: end}}
	adv := `{"services":[{"namespace":"shop","service":"api",
		"recommendation":{"setting":"trafficDistribution: PreferSameZone","safeguard":"a client zone without a ready endpoint falls back to every endpoint"},
		"risks":[{"kind":"single_endpoint","zone":"us-east-1a","message":"zone us-east-1a has a single ready endpoint"},
		         {"kind":"overload","zone":"us-east-1c","message":"would concentrate load"},
		         {"kind":"single_endpoint","zone":"us-east-1c","message":"zone us-east-1c has a single ready endpoint, which alone would serve its clients (30.3 % of the traffic)"}]}]}`
	var out strings.Builder
	key := func(src, srcZone, dst, dstZone string) PairKey {
		return PairKey{SrcNamespace: "shop", SrcWorkload: src, SrcKind: KindDeployment, SrcZone: srcZone,
			DstNamespace: "shop", DstWorkload: dst, DstKind: KindDeployment, DstZone: dstZone}
	}
	f := &Figures{Pairs: []PairFigures{
		{Key: key("frontend", c, "api", a), Bytes: 1000, MonthDollars: map[string]float64{"aws": 1.5, "gcp": 0.75}},
		{Key: key("api", b, "frontend", c), Bytes: 3000, MonthDollars: map[string]float64{"aws": 4.5, "gcp": 2.25}},
		{Key: key("frontend", a, "api", b), Bytes: 7000, MonthDollars: map[string]float64{"aws": 10, "gcp": 5}}, // another zone's
		{Key: key("frontend", c, "api", c), Bytes: 9000, MonthDollars: map[string]float64{}},                    // in zone
	}}
	if err := PrintRisk(&out, m, p, f, c, []byte(adv)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"The advice said: zone us-east-1c has a single ready endpoint, which alone would serve its clients (30.3 % of the traffic)\n",
		"and: a client zone without a ready endpoint falls back to every endpoint\n",
		"us-east-1a   100    100            0              0              0 (0%)\n",
		"us-east-1b   0      0              0              0              -\n",
		"us-east-1c   100    47             53             0              100 (100%)\n",
		"zonetoll counted 3.9 KiB of us-east-1c's frontend calls and their answers crossing zones again: AWS $6.00, GCP $3.00 per month at this rate.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	for _, not := range []string{"zone us-east-1a has a single", "would concentrate load"} {
		if strings.Contains(got, not) {
			t.Errorf("quotes %q, not the zone's single_endpoint risk:\n%s", not, got)
		}
	}
}
