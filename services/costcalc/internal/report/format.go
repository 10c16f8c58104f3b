package report

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/readable"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/render"
)

// Formats a report is written in.
var Formats = []string{"table", "json", "csv", "html"}

// Write writes r in format.
func Write(w io.Writer, r *Report, format string) error {
	return render.Write(w, format, Formats, r, render.Writers{
		"table": func(w io.Writer) error { return writeTable(w, r) },
		"csv":   func(w io.Writer) error { return writeCSV(w, r) },
		"html":  func(w io.Writer) error { return writeHTML(w, r) },
	})
}

// Dollars formats a dollar amount for people: cents, with more digits for amounts below a cent so small
// ranges do not read as free.
func Dollars(v float64) string { return readable.Dollars(v) }

// Volume formats bytes in the binary unit that fits (B, KiB, MiB, GiB, TiB); the exact bytes are in
// JSON and CSV.
func (r *Report) Volume(bytes float64) string { return readable.Size(bytes) }

// classDollars shows unpriced traffic as such: $0.00 would read as free.
func classDollars(c ClassTotal) string {
	if c.Class == pricing.Unpriced {
		return "not priced"
	}
	return Dollars(c.Dollars)
}

func endpoint(e pricing.Endpoint) string {
	switch {
	case e.Kind == pricing.KindExternal:
		return "external"
	case e.Namespace == "" && e.Workload == "":
		return e.Kind
	case e.Namespace == "":
		return e.Kind + "/" + e.Workload
	}
	return e.Namespace + "/" + e.Workload + " (" + e.Kind + ")"
}

func zoneOr(z string) string {
	if z == "" {
		return "-"
	}
	return z
}

// Title is the one-line summary every format starts with.
func (r *Report) Title() string {
	return fmt.Sprintf("Cross-zone traffic cost, %s to %s (%s)", r.Start.UTC().Format(time.RFC3339), r.End.UTC().Format(time.RFC3339), readable.Duration(r.End.Sub(r.Start)))
}

func writeTable(w io.Writer, r *Report) error {
	fmt.Fprintln(w, r.Title())
	fmt.Fprintf(w, "Prometheus %s (method %s); prices: %s preset, per %s\n\n", r.Prometheus, r.Method, r.Prices.Cloud, r.Prices.Unit)
	fmt.Fprintf(w, "Total:              %s\n", Dollars(r.Total))
	fmt.Fprintf(w, "Monthly projection: %s (the range's rate over %d days)\n\n", Dollars(r.Monthly), r.MonthDays)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLASS\tTRAFFIC\tCOST")
	for _, c := range r.Classes {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Class, r.Volume(c.Bytes), classDollars(c))
	}
	tw.Flush()
	fmt.Fprintf(w, "\nTop %d of %d workload pairs by cost:\n", len(r.Pairs), r.PairCount)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSOURCE\tSRC ZONE\tDESTINATION\tDST ZONE\tCLASS\tTRAFFIC\tCOST\tPER MONTH")
	for i, p := range r.Pairs {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, endpoint(p.Src), zoneOr(p.Src.Zone), endpoint(p.Dst), zoneOr(p.Dst.Zone), p.Class, r.Volume(p.Bytes), Dollars(p.Dollars), Dollars(p.Monthly))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nZone pairs by cost:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SRC ZONE\tDST ZONE\tCLASS\tTRAFFIC\tCOST\tPER MONTH")
	for _, z := range r.ZonePairs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", z.Src, z.Dst, z.Class, r.Volume(z.Bytes), Dollars(z.Dollars), Dollars(z.Monthly))
	}
	tw.Flush()
	writeServicesTable(w, r)
	if len(r.Unpriced) > 0 {
		fmt.Fprintln(w, "\nNot priced (an end's zone or region is unknown; not in the totals above):")
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SOURCE\tSRC ZONE\tDESTINATION\tDST ZONE\tREASON\tTRAFFIC")
		for _, p := range r.Unpriced {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", endpoint(p.Src), zoneOr(p.Src.Zone), endpoint(p.Dst), zoneOr(p.Dst.Zone), p.Reason, r.Volume(p.Bytes))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nPrices:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tPRICE\tCHECKED\tSOURCE")
	for _, row := range r.Prices.Rows {
		fmt.Fprintf(tw, "%s\t$%s/%s\t%s\t%s\n", row.Key(), strconv.FormatFloat(row.Price, 'f', -1, 64), r.Prices.Unit, checkedOn(row), row.Source)
	}
	return tw.Flush()
}

func writeCSV(w io.Writer, r *Report) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"section", "src_namespace", "src_workload", "src_kind", "src_zone", "dst_namespace", "dst_workload", "dst_kind", "dst_zone", "class", "reason", "bytes", "dollars", "monthly_dollars"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, p := range r.Pairs {
		cw.Write([]string{"workload_pair", p.Src.Namespace, p.Src.Workload, p.Src.Kind, p.Src.Zone, p.Dst.Namespace, p.Dst.Workload, p.Dst.Kind, p.Dst.Zone, string(p.Class), "", f(p.Bytes), f(p.Dollars), f(p.Monthly)})
	}
	for _, z := range r.ZonePairs {
		cw.Write([]string{"zone_pair", "", "", "", z.Src, "", "", "", z.Dst, string(z.Class), "", f(z.Bytes), f(z.Dollars), f(z.Monthly)})
	}
	for _, p := range r.Unpriced {
		cw.Write([]string{"unpriced", p.Src.Namespace, p.Src.Workload, p.Src.Kind, p.Src.Zone, p.Dst.Namespace, p.Dst.Workload, p.Dst.Kind, p.Dst.Zone, string(p.Class), p.Reason, f(p.Bytes), "", ""})
	}
	cw.Write([]string{"total", "", "", "", "", "", "", "", "", "", "", "", f(r.Total), f(r.Monthly)})
	cw.Flush()
	return cw.Error()
}

// writeServicesTable prints one line per Service; `costcalc advise` prints the whole advice.
func writeServicesTable(w io.Writer, r *Report) {
	if r.Services == nil {
		fmt.Fprintln(w, "\n"+r.NoServices)
		return
	}
	a := r.Services
	fmt.Fprintf(w, "\nServices with cross-zone bytes (%d; the whole advice: costcalc advise):\n", len(a.Services))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "SERVICE\tCROSSING"
	for _, c := range a.Clouds {
		head += "\t" + strings.ToUpper(c) + " SAVING/MONTH"
	}
	fmt.Fprintln(tw, head+"\tADVICE")
	for _, s := range a.Services {
		line := s.Namespace + "/" + s.Service + "\t" + readable.Size(s.CrossBytes)
		for _, c := range s.Clouds {
			line += "\t" + Dollars(c.SavingMonthly)
		}
		fmt.Fprintln(tw, line+"\t"+advice.VerdictText(s.Verdict))
	}
	tw.Flush()
}

// checkedOn is the date a person checked a price row, or says nobody did.
func checkedOn(row pricing.Row) string {
	if row.Read == "" {
		return "not checked"
	}
	return row.Read
}
