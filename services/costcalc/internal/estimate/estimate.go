// Package estimate answers what-if questions without a cluster: what scraping (or any steady traffic
// spread evenly over zones) costs when a share of it crosses zones, and what scraping within each zone
// would save.
package estimate

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

// MonthDays is the month of every monthly figure costcalc prints: 30 days (720 hours). It is the month
// of the motivating table ($9.15/day × 30 = $274.50); an average calendar month (730 hours) would give
// about 1.4 % more.
const MonthDays = 30

// Input is one what-if case.
type Input struct {
	Pods             int           // scrape targets
	Interval         time.Duration // scrape interval
	BytesPerScrape   float64       // bytes one scrape moves
	Zones            int           // zones the targets and scrapers are spread over evenly
	CrossingFraction float64       // share of scrapes that cross zones; < 0 means (zones-1)/zones
	PricePerUnit     float64       // dollars per Unit crossing, every side together
	Unit             pricing.Unit
	PriceSource      string
}

// Figure is one line of the table: the exact value and the value as a person's table would show it.
type Figure struct {
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	Exact    float64 `json:"exact"`
	Rounded  float64 `json:"rounded"`
	Decimals int     `json:"decimals"`
}

// Result is the estimate: the input, the table, and what scraping within each zone would save.
type Result struct {
	Pods             int      `json:"pods"`
	IntervalSeconds  float64  `json:"interval_seconds"`
	BytesPerScrape   float64  `json:"bytes_per_scrape"`
	Zones            int      `json:"zones"`
	CrossingFraction float64  `json:"crossing_fraction"`
	PricePerUnit     float64  `json:"price_per_unit"`
	Unit             string   `json:"unit"`
	PriceSource      string   `json:"price_source"`
	MonthDays        int      `json:"month_days"`
	Figures          []Figure `json:"figures"`
	// PerZoneSavingMonthly is what one scraper per zone (scraping only its own zone's pods) saves a
	// month: every scrape stays in its zone, so all the crossing cost goes.
	PerZoneSavingMonthly        float64 `json:"per_zone_saving_monthly"`
	PerZoneSavingMonthlyRounded float64 `json:"per_zone_saving_monthly_rounded"`
}

// Compute builds the table. The exact column is computed straight from the input. The rounded column
// is what a hand-made table shows, each dollar line computed from the rounded crossing volume a reader
// sees, and the month from the rounded day — that is how the motivating case gets $274.50 where the exact
// 30-day figure is $274.658203125.
func Compute(in Input) (Result, error) {
	switch {
	case in.Pods <= 0:
		return Result{}, fmt.Errorf("pods %d: expected at least 1", in.Pods)
	case in.Interval <= 0:
		return Result{}, fmt.Errorf("interval %s: expected a positive duration", in.Interval)
	case in.BytesPerScrape <= 0 || math.IsInf(in.BytesPerScrape, 0) || math.IsNaN(in.BytesPerScrape):
		return Result{}, fmt.Errorf("bytes per scrape %v: expected a positive size", in.BytesPerScrape)
	case in.Zones <= 0:
		return Result{}, fmt.Errorf("zones %d: expected at least 1", in.Zones)
	case in.CrossingFraction > 1 || math.IsNaN(in.CrossingFraction):
		return Result{}, fmt.Errorf("crossing fraction %v: expected a number from 0 to 1", in.CrossingFraction)
	case in.PricePerUnit < 0 || math.IsNaN(in.PricePerUnit) || math.IsInf(in.PricePerUnit, 0):
		return Result{}, fmt.Errorf("price %v: expected a finite number of at least 0", in.PricePerUnit)
	case in.Unit.Bytes() == 0:
		return Result{}, fmt.Errorf("unit %q: expected GB or GiB", in.Unit)
	}
	scrapesPerHour := float64(in.Pods) * float64(time.Hour) / float64(in.Interval)
	bytesPerHour := scrapesPerHour * in.BytesPerScrape
	var crossingBytes float64
	frac := in.CrossingFraction
	if frac < 0 {
		// Scrapers spread evenly over the zones reach a target in their own zone 1 time in zones.
		// Multiplying before dividing keeps 2/3 of a whole number of bytes exact.
		frac = float64(in.Zones-1) / float64(in.Zones)
		crossingBytes = bytesPerHour * float64(in.Zones-1) / float64(in.Zones)
	} else {
		crossingBytes = bytesPerHour * frac
	}
	unit := in.Unit.Bytes()
	volume, crossing := bytesPerHour/unit, crossingBytes/unit
	hour := crossing * in.PricePerUnit
	day, month := hour*24, hour*24*MonthDays

	crossingShown := round(crossing, 2)
	dayShown := round(crossingShown*24*in.PricePerUnit, 2)
	u := string(in.Unit)
	r := Result{
		Pods: in.Pods, IntervalSeconds: in.Interval.Seconds(), BytesPerScrape: in.BytesPerScrape, Zones: in.Zones,
		CrossingFraction: frac, PricePerUnit: in.PricePerUnit, Unit: u, PriceSource: in.PriceSource, MonthDays: MonthDays,
		Figures: []Figure{
			{"scrapes", "per hour", scrapesPerHour, round(scrapesPerHour, 0), 0},
			{"traffic", u + "/hour", volume, round(volume, 2), 2},
			{"crossing zones", u + "/hour", crossing, crossingShown, 2},
			{"cost", "$/hour", hour, round(crossingShown*in.PricePerUnit, 2), 2},
			{"cost", "$/day", day, dayShown, 2},
			{"cost", fmt.Sprintf("$/month (%d days)", MonthDays), month, round(dayShown*MonthDays, 2), 2},
		},
		PerZoneSavingMonthly:        month,
		PerZoneSavingMonthlyRounded: round(dayShown*MonthDays, 2),
	}
	return r, nil
}

func round(v float64, decimals int) float64 {
	// FormatFloat rounds the exact binary value to decimal places correctly; scaling by 10^decimals
	// first could push a value across a rounding boundary.
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	out, _ := strconv.ParseFloat(s, 64)
	return out
}

var sizeRE = regexp.MustCompile(`^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*$`)

var sizeUnits = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

// ParseSize reads a byte size: a plain number of bytes, or a number with KB/MB/GB (decimal) or
// KiB/MiB/GiB (binary).
func ParseSize(s string) (float64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("size %q: expected bytes such as 51200, 50KiB or 50KB", s)
	}
	mult, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q (expected B, KB, MB, GB, KiB, MiB or GiB)", s, m[2])
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, errors.Unwrap(err))
	}
	return v * mult, nil
}
