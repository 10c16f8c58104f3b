package readable

import (
	"testing"
	"time"
)

func TestSize(t *testing.T) {
	for _, c := range []struct {
		bytes float64
		want  string
	}{
		{0, "0 B"}, {512, "512 B"}, {1023, "1023 B"}, {1024, "1.00 KiB"}, {1500, "1.46 KiB"},
		{23.4 * (1 << 20), "23.4 MiB"}, {900 * (1 << 30), "900 GiB"}, {7 * (1 << 30), "7.00 GiB"},
		{9.999 * (1 << 30), "10.0 GiB"}, {1234 * float64(1<<40), "1.21 PiB"}, {-2048, "-2.00 KiB"},
	} {
		if got := Size(c.bytes); got != c.want {
			t.Errorf("Size(%v) = %q, want %q", c.bytes, got, c.want)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{67294632898 * time.Nanosecond, "1m 7s"}, {24 * time.Hour, "1d"}, {1500 * time.Microsecond, "2ms"},
		{2*24*time.Hour + 3*time.Hour + 20*time.Second, "2d 3h"}, {90 * time.Minute, "1h 30m"},
		{8*24*time.Hour + 29*time.Minute, "8d"}, {0, "0ms"}, {time.Hour, "1h"},
	} {
		if got := Duration(c.d); got != c.want {
			t.Errorf("Duration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}

func TestDollars(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{{0, "$0.00"}, {0.004, "$0.004000"}, {1234.5, "$1,234.50"}, {-0.5, "-$0.50"}} {
		if got := Dollars(c.v); got != c.want {
			t.Errorf("Dollars(%v) = %q, want %q", c.v, got, c.want)
		}
	}
	if got := SignedDollars(2); got != "+$2.00" {
		t.Errorf("SignedDollars(2) = %q", got)
	}
}
