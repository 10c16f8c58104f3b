// Package app wires costcalc: the `run` service (settings from ZONETOLL_* variables) and the one-shot
// `estimate` and `report` commands (cli flags).
package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/meter"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
	"github.com/zonetoll/zonetoll/shared/config"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
	"github.com/zonetoll/zonetoll/shared/tlsclient"
)

// Config is every setting of `costcalc run`, read from ZONETOLL_* variables.
type Config struct {
	servicecmd.Common
	Targets        []string      `desc:"Required. URLs of the flowserver /metrics endpoints to scrape, comma-separated (e.g. https://flowserver-a.zonetoll:8080/metrics). Kubernetes endpoints discovery is not built yet: list every per-zone flowserver."`
	ScrapeCAFile   string        `split_words:"true" desc:"PEM CA bundle that signs the flowservers' certificates, for https targets (a mounted ca.crt); re-read when it changes, so a rotated CA needs no restart. Empty uses the system roots."`
	ScrapeInterval time.Duration `split_words:"true" default:"30s" desc:"How often every target is scraped; the cost counters grow at this step."`
	ScrapeTimeout  time.Duration `split_words:"true" default:"10s" desc:"Time one scrape may take, parsing included; must be below the interval."`
	SeriesTTL      time.Duration `split_words:"true" default:"1h" desc:"A cost series that has not grown for this long is removed (its workload pair is gone or silent), as the flowserver's ZONETOLL_SERIES_TTL removes traffic series; 0 keeps series forever."`
	Prices         Prices
}

// Prices select the price table: a preset, then an override file, then the unit, then single prices.
type Prices struct {
	Cloud     string            `default:"aws" oneof:"aws azure gcp" desc:"Price preset (docs/costcalc.md lists its rows and sources)."`
	File      string            `desc:"YAML file overriding the preset: 'unit: GB|GiB' and/or 'rows:' with class, direction, price and source (see docs/costcalc.md)."`
	Unit      string            `desc:"Unit the prices are quoted in, GB (10^9 bytes) or GiB (2^30 bytes); empty keeps the preset's."`
	Overrides map[string]string `desc:"Single prices in dollars per unit, as row:price pairs, e.g. inter_zone_out:0.01,internet_out:0.05 (rows: inter_zone_out, inter_zone_in, inter_region_out, inter_region_in, internet_out, internet_in)."`
}

// Table loads the price table the settings describe; errors name the setting.
func (p Prices) Table() (*pricing.Table, error) {
	return pricing.Load(pricing.Options{Cloud: p.Cloud, Unit: p.Unit, UnitInput: "ZONETOLL_PRICES_UNIT", File: p.File,
		FileInput: "ZONETOLL_PRICES_FILE", Prices: p.Overrides, Origin: "ZONETOLL_PRICES_OVERRIDES"})
}

// Validate checks the targets, the timing and the prices, so a wrong setting stops run at start.
func (c *Config) Validate() error {
	if len(c.Targets) == 0 {
		return config.Invalid("ZONETOLL_TARGETS", "", "at least one flowserver /metrics URL")
	}
	for i, t := range c.Targets {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return config.Invalid("ZONETOLL_TARGETS", strings.Join(c.Targets, ","), "http(s) URLs such as https://flowserver:8080/metrics")
		}
		if slices.Contains(c.Targets[:i], t) {
			return config.Invalid("ZONETOLL_TARGETS", strings.Join(c.Targets, ","), "each URL once (a target listed twice would be billed twice)")
		}
	}
	if c.ScrapeInterval <= 0 {
		return config.Invalid("ZONETOLL_SCRAPE_INTERVAL", c.ScrapeInterval.String(), "a positive duration")
	}
	if c.ScrapeTimeout <= 0 || c.ScrapeTimeout > c.ScrapeInterval {
		return config.Invalid("ZONETOLL_SCRAPE_TIMEOUT", c.ScrapeTimeout.String(), fmt.Sprintf("a positive duration not above ZONETOLL_SCRAPE_INTERVAL (%s)", c.ScrapeInterval))
	}
	if c.SeriesTTL < 0 {
		return config.Invalid("ZONETOLL_SERIES_TTL", c.SeriesTTL.String(), "a duration, 0 to keep series")
	}
	if c.Prices.Unit != "" {
		if _, err := pricing.ParseUnit(c.Prices.Unit); err != nil {
			return config.Invalid("ZONETOLL_PRICES_UNIT", c.Prices.Unit, "GB, GiB or empty for the preset's unit")
		}
	}
	if _, err := c.Prices.Table(); err != nil {
		return fmt.Errorf("invalid prices: %w", err)
	}
	return nil
}

// Spec is the costcalc command line.
func Spec() servicecmd.Spec[Config] {
	return servicecmd.Spec[Config]{
		Name:       "costcalc",
		Usage:      "turns cross-zone bytes into dollars with each cloud's prices",
		Run:        Run,
		Kubernetes: false,
		Commands:   []*cli.Command{estimateCommand(), reportCommand(), adviseCommand(), compareCommand()},
	}
}

// Run scrapes the flowservers every interval until ctx is done.
func Run(ctx context.Context, cfg *Config, env servicecmd.Env) error {
	table, err := cfg.Prices.Table()
	if err != nil {
		return err
	}
	tr, err := tlsclient.New(cfg.ScrapeCAFile, "ZONETOLL_SCRAPE_CA_FILE", env.Logger)
	if err != nil {
		return fmt.Errorf("trusting the flowservers' CA: %w", err)
	}
	client := &http.Client{Transport: tr, Timeout: cfg.ScrapeTimeout}
	m, err := meter.New(meter.Options{Targets: cfg.Targets, Timeout: cfg.ScrapeTimeout, Table: table, SeriesTTL: cfg.SeriesTTL, Client: client}, env.Registry, env.Logger)
	if err != nil {
		return err
	}
	env.Server.AddReadinessCheck("first-scrape", func(context.Context) error {
		if !m.Scraped() {
			return errors.New("the first round of flowserver scrapes has not finished")
		}
		return nil
	})
	env.Started()
	env.Logger.Info("scraping flowservers", "targets", cfg.Targets, "interval", cfg.ScrapeInterval, "cloud", table.Cloud, "unit", table.Unit)
	m.Run(ctx, cfg.ScrapeInterval)
	return nil
}
