// Package readable writes amounts for people: dollars to the cent, sizes in the unit that fits, and
// durations rounded to what a person reads. Exact figures belong in JSON and CSV, not here.
package readable

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/estimate"
)

// Dollars formats a dollar amount: cents, with more digits for amounts below a cent so small ranges do
// not read as free. A negative amount (a difference) is written -$1.23.
func Dollars(v float64) string {
	if v < 0 {
		return "-" + Dollars(-v)
	}
	switch {
	case v == 0:
		return "$0.00"
	case v < 0.01:
		return "$" + strconv.FormatFloat(v, 'f', 6, 64)
	}
	return "$" + estimate.Thousands(v, 2)
}

// SignedDollars writes a difference with its sign: +$1.23, -$0.50, $0.00.
func SignedDollars(v float64) string {
	if v > 0 {
		return "+" + Dollars(v)
	}
	return Dollars(v)
}

// sizeUnits are binary: a cloud bills GiB (AWS, GCP) or GB, and the price table names its unit apart.
var sizeUnits = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}

// Size writes bytes in the largest binary unit that keeps the number at least 1, with three
// significant digits (512 B, 1.46 KiB, 23.4 MiB, 900 GiB, 1,234 TiB).
func Size(bytes float64) string {
	if bytes < 0 {
		return "-" + Size(-bytes)
	}
	if bytes < 1024 {
		return strconv.FormatFloat(math.Round(bytes), 'f', 0, 64) + " B"
	}
	i := 0
	v := bytes
	for v >= 1024 && i < len(sizeUnits)-1 {
		v /= 1024
		i++
	}
	decimals := 0
	switch {
	case v < 9.995:
		decimals = 2
	case v < 99.95:
		decimals = 1
	}
	return estimate.Thousands(v, decimals) + " " + sizeUnits[i]
}

// Duration writes d rounded for a title: milliseconds below a second, whole seconds below an hour,
// whole minutes below a week, whole hours beyond; zero parts are left out (1m 7s, 24h → 1d, 2d 3h).
func Duration(d time.Duration) string {
	if d < 0 {
		return "-" + Duration(-d)
	}
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Round(time.Millisecond).Milliseconds(), 10) + "ms"
	case d < time.Hour:
		d = d.Round(time.Second)
	case d < 7*24*time.Hour:
		d = d.Round(time.Minute)
	default:
		d = d.Round(time.Hour)
	}
	parts := []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	var out []string
	for _, p := range parts {
		if n := d / p.unit; n > 0 {
			out = append(out, strconv.FormatInt(int64(n), 10)+p.name)
			d -= n * p.unit
		}
	}
	if len(out) == 0 {
		return "0s"
	}
	return strings.Join(out, " ")
}
