package app

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/estimate"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/report"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

// usageError stops a one-shot command before it did anything, with the usage exit code.
func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Errorf(format, args...), servicecmd.ExitUsage)
}

func priceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "cloud", Value: "aws", Usage: "price preset: " + strings.Join(pricing.Clouds(), ", ")},
		&cli.StringFlag{Name: "prices-file", Usage: "YAML file overriding preset rows (see docs/costcalc.md)"},
		&cli.StringFlag{Name: "unit", Usage: "unit the prices are quoted in: GB (10^9 bytes) or GiB (2^30 bytes); default: the preset's"},
	}
}

func tableFromFlags(c *cli.Context, prices map[string]string) (*pricing.Table, error) {
	t, err := pricing.Load(pricing.Options{Cloud: c.String("cloud"), Unit: c.String("unit"), UnitInput: "flag --unit",
		File: c.String("prices-file"), FileInput: "flag --prices-file", Prices: prices, Origin: "flag --price"})
	if err != nil {
		if errors.Is(err, pricing.ErrUnknownCloud) {
			return nil, usageError("flag --cloud: %w", err)
		}
		return nil, cli.Exit(err, servicecmd.ExitUsage)
	}
	return t, nil
}

// queryArgs checks what every command reading a query API starts with (flags only, a --format of
// formats) and returns the format with the price table of the flags.
func queryArgs(c *cli.Context, formats []string) (string, *pricing.Table, error) {
	if c.NArg() > 0 {
		return "", nil, usageError("unexpected arguments %q: %s takes flags only", c.Args().Slice(), c.Command.Name)
	}
	format := c.String("format")
	if !slices.Contains(formats, format) {
		return "", nil, usageError("flag --format %q: expected one of %s", format, strings.Join(formats, ", "))
	}
	prices, err := priceOverrides(c)
	if err != nil {
		return "", nil, err
	}
	table, err := tableFromFlags(c, prices)
	if err != nil {
		return "", nil, err
	}
	return format, table, nil
}

// writeOutput writes what (the report, the advice…) with write to the file --output names, or to
// standard output when it is empty or "-". A file that cannot be created is a usage error.
func writeOutput(c *cli.Context, what string, write func(io.Writer) error) error {
	w, closeOut := c.App.Writer, func() error { return nil }
	if path := c.String("output"); path != "" && path != "-" {
		f, err := os.Create(path)
		if err != nil {
			return usageError("flag --output: %w", err)
		}
		w, closeOut = f, f.Close
	}
	if err := write(w); err != nil {
		closeOut()
		return fmt.Errorf("writing %s: %w", what, err)
	}
	return closeOut()
}

func estimateCommand() *cli.Command {
	return &cli.Command{
		Name:  "estimate",
		Usage: "what scraping (or any steady traffic spread over zones) costs when part of it crosses zones; no cluster needed",
		Description: "With no flags it prints the motivating case: 100 nodes × 100 pods scraped every 60 s, 50 KiB per scrape,\n" +
			"3 zones, AWS ($0.01/GiB out + $0.01/GiB in = $0.02 per GiB crossing).",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "pods", Usage: "scrape targets in total (default: --nodes × --pods-per-node)"},
			&cli.IntFlag{Name: "nodes", Value: 100, Usage: "nodes"},
			&cli.IntFlag{Name: "pods-per-node", Value: 100, Usage: "scrape targets per node"},
			&cli.DurationFlag{Name: "interval", Value: 60 * time.Second, Usage: "scrape interval"},
			&cli.StringFlag{Name: "bytes-per-scrape", Value: "50KiB", Usage: "bytes one scrape moves: 51200, 50KiB (binary) or 50KB (decimal)"},
			&cli.IntFlag{Name: "zones", Value: 3, Usage: "zones targets and scrapers are spread over evenly"},
			&cli.StringFlag{Name: "crossing-fraction", Usage: "share of scrapes that cross zones, 0 to 1 (default: (zones-1)/zones)"},
			&cli.StringFlag{Name: "price", Usage: "dollars per unit for traffic crossing zones, every billed side together (default: the preset's inter_zone_out + inter_zone_in)"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table or json"},
		}, priceFlags()...),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("unexpected arguments %q: estimate takes flags only", c.Args().Slice())
			}
			if f := c.String("format"); f != "table" && f != "json" {
				return usageError("flag --format %q: expected table or json", f)
			}
			table, err := tableFromFlags(c, nil)
			if err != nil {
				return err
			}
			in := estimate.Input{Pods: c.Int("pods"), Interval: c.Duration("interval"), Zones: c.Int("zones"), CrossingFraction: -1, Unit: table.Unit}
			if !c.IsSet("pods") {
				in.Pods = c.Int("nodes") * c.Int("pods-per-node")
			}
			if in.BytesPerScrape, err = estimate.ParseSize(c.String("bytes-per-scrape")); err != nil {
				return usageError("flag --bytes-per-scrape: %w", err)
			}
			if s := c.String("crossing-fraction"); s != "" {
				if _, err := fmt.Sscan(s, &in.CrossingFraction); err != nil || in.CrossingFraction < 0 || in.CrossingFraction > 1 {
					return usageError("flag --crossing-fraction %q: expected a number from 0 to 1", s)
				}
			}
			if s := c.String("price"); s != "" {
				if in.PricePerUnit, err = pricing.ParsePrice(s); err != nil {
					return usageError("flag --price: %w", err)
				}
				in.PriceSource = "flag --price"
			} else {
				out, inRow := table.Row(pricing.InterZone, pricing.Out), table.Row(pricing.InterZone, pricing.In)
				in.PricePerUnit = out.Price + inRow.Price
				in.PriceSource = fmt.Sprintf("%s inter_zone_out $%g + inter_zone_in $%g", table.Cloud, out.Price, inRow.Price)
			}
			r, err := estimate.Compute(in)
			if err != nil {
				return usageError("estimate: %w", err)
			}
			return estimate.Write(c.App.Writer, r, c.String("format"))
		},
	}
}

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "top workload pairs and zone pairs by cost over a time range, read from a Prometheus-compatible query API",
		Flags: append(append(rangeFlags(),
			&cli.StringSliceFlag{Name: "price", Usage: "override one price row, row=dollars per unit, e.g. --price internet_out=0.05 (repeatable)"},
			&cli.IntFlag{Name: "top", Value: 10, Usage: "workload pairs listed"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table, json, csv or html (a self-contained page with charts)"},
			&cli.StringFlag{Name: "output", Usage: "write to this file instead of standard output"},
		), append(adviceFlags(), priceFlags()...)...),
		Action: func(c *cli.Context) error {
			format, table, err := queryArgs(c, report.Formats)
			if err != nil {
				return err
			}
			start, end, src, err := sourceFromFlags(c)
			if err != nil {
				return err
			}
			data, err := src.Read(c.Context, start, end)
			if err != nil {
				return err
			}
			r := report.Compute(data, table, start, end, c.Int("top"))
			r.Prometheus, r.Method = src.URL, src.Method
			adv, found, err := readAdvice(c, src, table, start, end)
			if err != nil {
				return err
			}
			if found {
				r.Services, r.NoServices = adv, ""
			}
			return writeOutput(c, "the report", func(w io.Writer) error { return report.Write(w, r, format) })
		},
	}
}

// rangeFlags are the flags of every command that reads a range from a Prometheus-compatible API.
func rangeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "prometheus", Usage: "base URL of the Prometheus-compatible API (Prometheus, VictoriaMetrics, Thanos, Mimir), e.g. http://prometheus:9090", Required: true},
		&cli.DurationFlag{Name: "range", Value: 24 * time.Hour, Usage: "length of the range ending at --end (ignored when --start is set)"},
		&cli.TimestampFlag{Name: "start", Layout: time.RFC3339, Usage: "start of the range (RFC 3339, e.g. 2026-11-01T00:00:00Z)"},
		&cli.TimestampFlag{Name: "end", Layout: time.RFC3339, Usage: "end of the range (RFC 3339; default: now)"},
		&cli.StringFlag{Name: "method", Value: report.MethodSamples, Usage: "samples: add up every raw sample, exact (hours to days); increase: Prometheus' increase(), extrapolated (weeks)"},
	}
}

// sourceFromFlags reads the range and the query API the flags of rangeFlags name.
func sourceFromFlags(c *cli.Context) (start, end time.Time, src *report.Source, err error) {
	end = time.Now()
	if t := c.Timestamp("end"); t != nil {
		end = *t
	}
	start = end.Add(-c.Duration("range"))
	if t := c.Timestamp("start"); t != nil {
		start = *t
	}
	if !end.After(start) {
		return start, end, nil, usageError("range %s to %s: the end must be after the start", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	src, err = report.NewSource(c.String("prometheus"), c.String("method"))
	if err != nil {
		return start, end, nil, usageError("flag --prometheus/--method: %w", err)
	}
	return start, end, src, nil
}
