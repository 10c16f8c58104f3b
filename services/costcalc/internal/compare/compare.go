// Package compare sets two periods side by side — before and after a routing change — per Service and
// per workload pair, in bytes and dollars, so a user can check the saving they were promised. Periods
// of different lengths are compared by their monthly rate; the raw figures are kept beside it.
package compare

import (
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/estimate"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/readable"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/render"
)

// Period is what was read for one range.
type Period struct {
	Start    time.Time         `json:"start"`
	End      time.Time         `json:"end"`
	Pairs    []PairBytes       `json:"-"` // zonetoll_traffic_bytes_total increase, by its 8 labels
	Services []advice.Flow     `json:"-"` // zonetoll_service_traffic_bytes_total increase
	Zones    map[string]string `json:"-"` // zone → region
}

// PairBytes is the traffic of one workload pair in a period.
type PairBytes struct {
	Src, Dst pricing.Endpoint
	Bytes    float64
}

// Side is one period's figures of a row.
type Side struct {
	Bytes   float64 `json:"bytes"`
	Dollars float64 `json:"dollars"`
	Monthly float64 `json:"monthly_dollars"`
}

// Row is a Service or a workload pair in both periods.
type Row struct {
	Kind          string            `json:"kind"` // service or workload_pair
	Name          string            `json:"name"` // namespace/service, or src → dst
	Src           *pricing.Endpoint `json:"src,omitempty"`
	Dst           *pricing.Endpoint `json:"dst,omitempty"`
	Before        Side              `json:"before"`
	After         Side              `json:"after"`
	ChangeMonthly float64           `json:"change_monthly_dollars"` // after − before, per month
	ChangeBytes   float64           `json:"change_bytes_per_day"`   // after − before, bytes per day
	ChangePercent *float64          `json:"change_percent"`         // of the before monthly; null when before was 0
}

// Result is the comparison.
type Result struct {
	Before      Period         `json:"before"`
	After       Period         `json:"after"`
	Prices      *pricing.Table `json:"prices"`
	MonthDays   int            `json:"month_days"`
	Services    []Row          `json:"services"`       // cross-zone bytes to each Service
	Pairs       []Row          `json:"workload_pairs"` // crossing workload pairs, biggest change first
	PairCount   int            `json:"pair_count"`
	Total       Row            `json:"total"`
	ServiceData bool           `json:"service_data"` // both periods had per-Service metrics
}

// Compute prices both periods with table and lines them up; top bounds the workload pairs listed.
func Compute(before, after Period, table *pricing.Table, top int) *Result {
	r := &Result{Before: before, After: after, Prices: table, MonthDays: estimate.MonthDays, ServiceData: len(before.Services) > 0 && len(after.Services) > 0}
	zones := map[string]string{}
	for _, p := range []Period{before, after} {
		for z, reg := range p.Zones {
			zones[z] = reg
		}
	}
	regions := pricing.Regions{Known: zones, Cloud: table.Cloud}
	scale := func(p Period) float64 { return float64(estimate.MonthDays*24*time.Hour) / float64(p.End.Sub(p.Start)) }
	perDay := func(p Period) float64 { return float64(24*time.Hour) / float64(p.End.Sub(p.Start)) }

	rows := map[string]*Row{}
	get := func(kind, name string) *Row {
		k := kind + "\xff" + name
		if rows[k] == nil {
			rows[k] = &Row{Kind: kind, Name: name}
		}
		return rows[k]
	}
	// add counts bytes at perByte into row's side of period i (0 before, 1 after).
	add := func(row *Row, i int, p Period, bytes, perByte float64) {
		s := &row.Before
		if i == 1 {
			s = &row.After
		}
		s.Bytes += bytes
		s.Dollars += bytes * perByte
		s.Monthly += bytes * perByte * scale(p)
	}
	r.Total = Row{Kind: "total", Name: "every crossing workload pair"}
	for i, p := range []Period{before, after} {
		for _, pb := range p.Pairs {
			perByte, class, _ := table.PerByteOf(pb.Src, pb.Dst, regions)
			if class == pricing.SameZone || class == pricing.Unpriced || pb.Bytes == 0 {
				continue
			}
			row := get("workload_pair", name(pb.Src)+" → "+name(pb.Dst))
			src, dst := pb.Src, pb.Dst
			row.Src, row.Dst = &src, &dst
			add(row, i, p, pb.Bytes, perByte)
			add(&r.Total, i, p, pb.Bytes, perByte)
		}
		for _, f := range p.Services {
			if f.SrcZone == "" || f.DstZone == "" || f.SrcZone == f.DstZone || f.Bytes == 0 {
				continue
			}
			perByte, class, _ := table.PerByteOf(pricing.Endpoint{Kind: "pod", Zone: f.SrcZone}, pricing.Endpoint{Kind: "pod", Zone: f.DstZone}, regions)
			if class == pricing.Unpriced {
				continue
			}
			add(get("service", f.Namespace+"/"+f.Service), i, p, f.Bytes, perByte)
		}
	}
	finish := func(row *Row) {
		row.ChangeMonthly = row.After.Monthly - row.Before.Monthly
		row.ChangeBytes = row.After.Bytes*perDay(after) - row.Before.Bytes*perDay(before)
		if row.Before.Monthly > 0 {
			pct := math.Round(row.ChangeMonthly/row.Before.Monthly*1000) / 10
			row.ChangePercent = &pct
		}
	}
	finish(&r.Total)
	for _, row := range rows {
		finish(row)
		if row.Kind == "service" {
			r.Services = append(r.Services, *row)
		} else {
			r.Pairs = append(r.Pairs, *row)
		}
	}
	byChange := func(list []Row) {
		sort.Slice(list, func(i, j int) bool {
			a, b := math.Abs(list[i].ChangeMonthly), math.Abs(list[j].ChangeMonthly)
			if a != b {
				return a > b
			}
			return list[i].Name < list[j].Name
		})
	}
	byChange(r.Services)
	byChange(r.Pairs)
	r.PairCount = len(r.Pairs)
	if top > 0 && len(r.Pairs) > top {
		r.Pairs = r.Pairs[:top]
	}
	return r
}

func name(e pricing.Endpoint) string {
	switch {
	case e.Kind == pricing.KindExternal:
		return "external"
	case e.Namespace == "":
		return e.Kind + "/" + e.Workload + " (" + e.Zone + ")"
	}
	return e.Namespace + "/" + e.Workload + " (" + e.Zone + ")"
}

// Formats the comparison is written in.
var Formats = []string{"table", "json", "csv"}

// Write writes r in format.
func Write(w io.Writer, r *Result, format string) error {
	return render.Write(w, format, Formats, r, render.Writers{
		"table": func(w io.Writer) error { return writeTable(w, r) },
		"csv":   func(w io.Writer) error { return writeCSV(w, r) },
	})
}

func period(p Period) string {
	return fmt.Sprintf("%s to %s (%s)", p.Start.UTC().Format(time.RFC3339), p.End.UTC().Format(time.RFC3339), readable.Duration(p.End.Sub(p.Start)))
}

func percent(p *float64) string {
	if p == nil {
		return "-"
	}
	s := strconv.FormatFloat(*p, 'f', -1, 64) + " %"
	if *p > 0 {
		s = "+" + s
	}
	return s
}

func writeTable(w io.Writer, r *Result) error {
	fmt.Fprintf(w, "Before: %s\nAfter:  %s\n", period(r.Before), period(r.After))
	fmt.Fprintf(w, "Prices: %s preset, per %s. Periods are compared per month (%d days) at each period's rate.\n\n", r.Prices.Cloud, r.Prices.Unit, r.MonthDays)
	section := func(title string, rows []Row) {
		fmt.Fprintln(w, title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tBEFORE\tBEFORE $\tBEFORE $/MONTH\tAFTER\tAFTER $\tAFTER $/MONTH\tCHANGE $/MONTH\tCHANGE")
		for _, row := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Name, readable.Size(row.Before.Bytes), readable.Dollars(row.Before.Dollars), readable.Dollars(row.Before.Monthly),
				readable.Size(row.After.Bytes), readable.Dollars(row.After.Dollars), readable.Dollars(row.After.Monthly), readable.SignedDollars(row.ChangeMonthly), percent(row.ChangePercent))
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	section("Total:", []Row{r.Total})
	if r.ServiceData {
		section("Cross-zone bytes to each Service:", r.Services)
	} else {
		fmt.Fprintln(w, "No Service data in one of the periods (zonetoll_service_traffic_bytes_total): per-Service rows need flowservers from issue #18 in both.")
		fmt.Fprintln(w)
	}
	section(fmt.Sprintf("Crossing workload pairs, biggest change first (%d of %d):", len(r.Pairs), r.PairCount), r.Pairs)
	return nil
}

func writeCSV(w io.Writer, r *Result) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"kind", "name", "before_bytes", "before_dollars", "before_monthly_dollars", "after_bytes", "after_dollars", "after_monthly_dollars", "change_monthly_dollars", "change_percent"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }
	for _, row := range append(append([]Row{r.Total}, r.Services...), r.Pairs...) {
		pct := ""
		if row.ChangePercent != nil {
			pct = f(*row.ChangePercent)
		}
		cw.Write([]string{row.Kind, row.Name, f(row.Before.Bytes), f(row.Before.Dollars), f(row.Before.Monthly), f(row.After.Bytes), f(row.After.Dollars), f(row.After.Monthly), f(row.ChangeMonthly), pct})
	}
	cw.Flush()
	return cw.Error()
}
