package zonelabeler

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted on purpose
	}
	tests := []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"median of odd count", ms(30, 10, 20), 0.5, 20 * time.Millisecond},
		{"median of even count is the lower middle", ms(40, 10, 30, 20), 0.5, 20 * time.Millisecond},
		{"p99 of 1..100", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p50 of 1..100", ms(hundred...), 0.50, 50 * time.Millisecond},
		{"max", ms(hundred...), 1, 100 * time.Millisecond},
		{"one value", ms(7), 0.99, 7 * time.Millisecond},
		{"negative values sort first", ms(5, -3, 1), 0.01, -3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := percentile(tt.in, tt.q)
			if !ok || got != tt.want {
				t.Errorf("percentile(%v) = %v (ok=%v), want %v", tt.q, got, ok, tt.want)
			}
		})
	}
	if _, ok := percentile(nil, 0.5); ok {
		t.Error("percentile of nothing reported ok")
	}
	in := ms(3, 1, 2)
	percentile(in, 0.5)
	if in[0] != 3*time.Millisecond {
		t.Error("percentile reordered its input")
	}
}
