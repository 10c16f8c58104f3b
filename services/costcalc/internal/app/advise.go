package app

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/report"
)

// priceOverrides reads the repeatable --price row=dollars flag.
func priceOverrides(c *cli.Context) (map[string]string, error) {
	prices := map[string]string{}
	for _, kv := range c.StringSlice("price") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageError("flag --price %q: expected row=price, e.g. internet_out=0.05", kv)
		}
		prices[strings.TrimSpace(k)] = v
	}
	return prices, nil
}

// everyCloud is every preset, with table (the --cloud preset and its overrides) in its cloud's place.
func everyCloud(table *pricing.Table) ([]*pricing.Table, error) {
	var out []*pricing.Table
	for _, c := range pricing.Clouds() {
		if c == table.Cloud {
			out = append(out, table)
			continue
		}
		t, err := pricing.Preset(c)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func adviceFlags() []cli.Flag {
	return []cli.Flag{
		&cli.Float64Flag{Name: "overload-ratio", Value: advice.DefaultOverloadRatio, Usage: "a zone whose share of the client traffic divided by its share of the ready endpoints is above this is a risk"},
		&cli.IntFlag{Name: "min-endpoints", Value: advice.DefaultMinEndpoints, Usage: "fewer ready endpoints than this in all is a risk"},
		&cli.StringFlag{Name: "kubernetes-version", Usage: "the cluster's Kubernetes version, e.g. v1.34.2 (default: zonetoll_kubernetes_info)"},
	}
}

// readAdvice reads the Service metrics and computes the advice; found is false when the range has none.
func readAdvice(c *cli.Context, src *report.Source, table *pricing.Table, start, end time.Time) (*advice.Result, bool, error) {
	if c.Float64("overload-ratio") <= 0 {
		return nil, false, usageError("flag --overload-ratio %v: expected a number above 0", c.Float64("overload-ratio"))
	}
	if c.Int("min-endpoints") < 1 {
		return nil, false, usageError("flag --min-endpoints %d: expected at least 1", c.Int("min-endpoints"))
	}
	in, found, err := src.ReadServices(c.Context, start, end)
	if err != nil || !found {
		return nil, false, err
	}
	if v := c.String("kubernetes-version"); v != "" {
		if _, ok := advice.Minor(v); !ok {
			return nil, false, usageError("flag --kubernetes-version %q: expected a Kubernetes 1.x version such as v1.34.2", v)
		}
		in.Kubernetes, in.KubeSource = v, "flag --kubernetes-version"
	}
	if in.Tables, err = everyCloud(table); err != nil {
		return nil, false, err
	}
	in.Options = advice.Options{OverloadRatio: c.Float64("overload-ratio"), MinEndpoints: c.Int("min-endpoints")}
	return advice.Compute(in), true, nil
}

func adviseCommand() *cli.Command {
	return &cli.Command{
		Name:  "advise",
		Usage: "per Service: cross-zone bytes and dollars, the same-zone routing setting to apply, its monthly saving per cloud and its risks",
		Description: "Reads zonetoll_service_* and zonetoll_kubernetes_info from a Prometheus-compatible query API over a range\n" +
			"(docs/costcalc.md, \"Advice\"). Every cloud's preset is shown; price flags change the --cloud column.",
		Flags: append(append(append(rangeFlags(),
			&cli.StringSliceFlag{Name: "price", Usage: "override one price row of the --cloud preset, row=dollars per unit (repeatable)"},
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table, json or html (a self-contained page)"},
			&cli.StringFlag{Name: "output", Usage: "write to this file instead of standard output"},
		), adviceFlags()...), priceFlags()...),
		Action: func(c *cli.Context) error {
			format, table, err := queryArgs(c, advice.Formats)
			if err != nil {
				return err
			}
			start, end, src, err := sourceFromFlags(c)
			if err != nil {
				return err
			}
			r, found, err := readAdvice(c, src, table, start, end)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("%w: Prometheus at %s has no %s series between %s and %s: are the flowservers new enough (issue #18) and scraped?",
					report.ErrNoData, src.URL, advice.TrafficMetric, start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
			}
			return writeOutput(c, "the advice", func(w io.Writer) error { return advice.Write(w, r, format) })
		},
	}
}
