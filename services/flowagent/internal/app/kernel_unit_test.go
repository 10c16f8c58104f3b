package app

import (
	"maps"
	"testing"

	"github.com/zonetoll/zonetoll/bpf/counter"
)

func TestModeReason(t *testing.T) {
	old := features{BTF: true}
	noBTF := features{Netfilter: true}
	modern := features{BTF: true, Netfilter: true, TCX: true}
	for _, tc := range []struct {
		configured, chosen counter.Mode
		f                  features
		want               string
	}{
		{counter.ModeAuto, counter.ModeTC, old, "kernel 5.10.0-32-cloud-amd64 lacks netfilter BPF links (needs 6.4)"},
		{counter.ModeAuto, counter.ModeTC, noBTF, "kernel 5.10.0-32-cloud-amd64 has no BTF (/sys/kernel/btf/vmlinux), which the netfilter program needs"},
		{counter.ModeAuto, counter.ModeNetfilter, modern, "kernel 5.10.0-32-cloud-amd64 has netfilter BPF links (6.4+) and BTF"},
		{counter.ModeTC, counter.ModeTC, modern, "configured (ZONETOLL_BPF_MODE=tc)"},
		{counter.ModeNetfilter, counter.ModeNetfilter, modern, "configured (ZONETOLL_BPF_MODE=netfilter)"},
	} {
		if got := modeReason(tc.configured, tc.chosen, "5.10.0-32-cloud-amd64", tc.f); got != tc.want {
			t.Errorf("modeReason(%s, %s, %v) = %q, want %q", tc.configured, tc.chosen, tc.f, got, tc.want)
		}
	}
}

func TestFeaturesString(t *testing.T) {
	if got, want := (features{BTF: true, TCX: true}).String(), "btf=true netfilter_links=false tcx=true"; got != want {
		t.Errorf("features = %q, want %q", got, want)
	}
}

func TestParseTextLine(t *testing.T) {
	got := parseTextLine(`time=2026-12-07T01:55:00Z level=INFO msg=counting mode=tc reason="configured (ZONETOLL_BPF_MODE=tc)" hook="tc egress" counting_on=n1(uplink)` + "\n")
	want := map[string]any{"time": "2026-12-07T01:55:00Z", "level": "INFO", "msg": "counting", "mode": "tc",
		"reason": "configured (ZONETOLL_BPF_MODE=tc)", "hook": "tc egress", "counting_on": "n1(uplink)"}
	if !maps.Equal(got, want) {
		t.Errorf("parseTextLine = %v, want %v", got, want)
	}
}
