package estimate

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/render"
)

// Write prints r as a table (for people) or json.
func Write(w io.Writer, r Result, format string) error {
	return render.Write(w, format, Formats, r, render.Writers{"table": func(w io.Writer) error { return writeTable(w, r) }})
}

// Formats an estimate is written in.
var Formats = []string{"table", "json"}

func writeTable(w io.Writer, r Result) error {
	fmt.Fprintf(w, "Estimate: %s targets scraped every %s, %s bytes per scrape, %d zones (%s of scrapes cross zones), $%s per %s crossing (%s)\n\n",
		Thousands(float64(r.Pods), 0), trimDuration(r.IntervalSeconds), Thousands(r.BytesPerScrape, -1), r.Zones,
		fraction(r.CrossingFraction, r.Zones), strconv.FormatFloat(r.PricePerUnit, 'f', -1, 64), r.Unit, r.PriceSource)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHAT\tUNIT\tROUNDED\tEXACT")
	for _, f := range r.Figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, f.Unit, Thousands(f.Rounded, f.Decimals), strconv.FormatFloat(f.Exact, 'f', -1, 64))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nRounded figures are what a hand-made table shows: dollars computed from the rounded crossing volume,\n"+
		"the month as %d × the rounded day. The exact column is not rounded; the difference is rounding, not a bug.\n", r.MonthDays)
	_, err := fmt.Fprintf(w, "Scraping within each zone (one scraper per zone, scraping only its zone's targets) keeps every scrape\n"+
		"in its zone and saves $%s/month (exact $%s).\n"+
		"Whatever the per-zone scrapers forward to a central store (remote write, federation) still crosses\n"+
		"zones: estimate it with its own bytes and interval.\n",
		Thousands(r.PerZoneSavingMonthlyRounded, 2), strconv.FormatFloat(r.PerZoneSavingMonthly, 'f', -1, 64))
	return err
}

// Thousands formats v with a comma every three digits and decimals places (-1: as many as needed).
func Thousands(v float64, decimals int) string {
	s := strconv.FormatFloat(v, 'f', decimals, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, hasFrac := strings.Cut(s, ".")
	var b strings.Builder
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	out := b.String()
	if hasFrac {
		out += "." + frac
	}
	if neg {
		out = "-" + out
	}
	return out
}

func fraction(f float64, zones int) string {
	if zones > 1 && f == float64(zones-1)/float64(zones) {
		return fmt.Sprintf("%d/%d", zones-1, zones)
	}
	return strconv.FormatFloat(f, 'f', -1, 64)
}

func trimDuration(seconds float64) string {
	return strconv.FormatFloat(seconds, 'f', -1, 64) + "s"
}
