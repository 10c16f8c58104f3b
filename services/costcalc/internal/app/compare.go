package app

import (
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/compare"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/meter"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/report"
)

func compareCommand() *cli.Command {
	return &cli.Command{
		Name:  "compare",
		Usage: "two periods side by side (before and after a change), per Service and per workload pair, in bytes and dollars",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "prometheus", Usage: "base URL of the Prometheus-compatible API, e.g. http://prometheus:9090", Required: true},
			&cli.TimestampFlag{Name: "before-start", Layout: time.RFC3339, Required: true, Usage: "start of the period before the change (RFC 3339)"},
			&cli.TimestampFlag{Name: "before-end", Layout: time.RFC3339, Required: true, Usage: "end of the period before the change"},
			&cli.TimestampFlag{Name: "after-start", Layout: time.RFC3339, Required: true, Usage: "start of the period after the change"},
			&cli.TimestampFlag{Name: "after-end", Layout: time.RFC3339, Usage: "end of the period after the change (default: now)"},
			&cli.StringFlag{Name: "method", Value: report.MethodSamples, Usage: "samples (exact, hours to days) or increase (extrapolated, weeks)"},
			&cli.StringSliceFlag{Name: "price", Usage: "override one price row, row=dollars per unit (repeatable)"},
			&cli.IntFlag{Name: "top", Value: 20, Usage: "workload pairs listed"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table, json or csv"},
			&cli.StringFlag{Name: "output", Usage: "write to this file instead of standard output"},
		}, priceFlags()...),
		Action: func(c *cli.Context) error {
			format, table, err := queryArgs(c, compare.Formats)
			if err != nil {
				return err
			}
			afterEnd := time.Now()
			if t := c.Timestamp("after-end"); t != nil {
				afterEnd = *t
			}
			before := compare.Period{Start: *c.Timestamp("before-start"), End: *c.Timestamp("before-end")}
			after := compare.Period{Start: *c.Timestamp("after-start"), End: afterEnd}
			for _, p := range []struct {
				name string
				p    compare.Period
			}{{"--before-start/--before-end", before}, {"--after-start/--after-end", after}} {
				if !p.p.End.After(p.p.Start) {
					return usageError("flags %s: the end (%s) must be after the start (%s)", p.name, p.p.End.Format(time.RFC3339), p.p.Start.Format(time.RFC3339))
				}
			}
			src, err := report.NewSource(c.String("prometheus"), c.String("method"))
			if err != nil {
				return usageError("flag --prometheus/--method: %w", err)
			}
			for _, p := range []*compare.Period{&before, &after} {
				if err := readPeriod(c, src, p); err != nil {
					return err
				}
			}
			if len(before.Pairs) == 0 && len(after.Pairs) == 0 {
				return fmt.Errorf("%w: Prometheus at %s has no %s series in either period: is it scraping the flowservers?", report.ErrNoData, src.URL, meter.TrafficMetric)
			}
			r := compare.Compute(before, after, table, c.Int("top"))
			return writeOutput(c, "the comparison", func(w io.Writer) error { return compare.Write(w, r, format) })
		},
	}
}

// readPeriod reads the workload pairs, the per-Service traffic and the zones' regions of one period.
func readPeriod(c *cli.Context, src *report.Source, p *compare.Period) error {
	pairs, err := src.Increase(c.Context, meter.TrafficMetric, meter.TrafficLabels, p.Start, p.End)
	if err != nil {
		return err
	}
	for _, s := range pairs {
		l := s.Labels
		p.Pairs = append(p.Pairs, compare.PairBytes{Src: pricing.Endpoint{Namespace: l[0], Workload: l[1], Kind: l[2], Zone: l[3]},
			Dst: pricing.Endpoint{Namespace: l[4], Workload: l[5], Kind: l[6], Zone: l[7]}, Bytes: s.Value})
	}
	svc, err := src.Increase(c.Context, advice.TrafficMetric, advice.TrafficLabels, p.Start, p.End)
	if err != nil {
		return err
	}
	for _, s := range svc {
		l := s.Labels
		p.Services = append(p.Services, advice.Flow{Namespace: l[0], Service: l[1], ClientNamespace: l[2], ClientWorkload: l[3], ClientKind: l[4], SrcZone: l[5], DstZone: l[6], Bytes: s.Value})
	}
	p.Zones, err = src.ZoneRegions(c.Context, p.Start, p.End)
	return err
}
