package main

import "testing"

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		in   []float64
		want spread
	}{
		{[]float64{3}, spread{3, 3, 3}},
		{[]float64{5, 1, 3}, spread{3, 1, 5}},
		{[]float64{4, 1, 3, 2}, spread{2.5, 1, 4}},
	}
	for _, tt := range tests {
		if got := spreadOf(tt.in); got != tt.want {
			t.Errorf("spreadOf(%v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestPairedDividesWithinRounds(t *testing.T) {
	res := results{
		modeNone:    {{udpPPS: 100}, {udpPPS: 200}, {udpPPS: 50}},
		modeCounter: {{udpPPS: 90}, {udpPPS: 190}, {udpPPS: 50}},
	}
	got := paired(res, modeCounter, modeNone, func(s sample) float64 { return s.udpPPS })
	// Ratios per round: 0.9, 0.95, 1.0; not the ratio of medians (90/100).
	if want := (spread{0.95, 0.9, 1}); got != want {
		t.Errorf("paired = %+v, want %+v", got, want)
	}
}
