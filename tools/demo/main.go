package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// MainOptions are the demo command's choices.
type MainOptions struct {
	Options
	Phase1, Phase2 time.Duration
	// Phase3 is the advice's risk played out (routing only; 0 skips it): the last zone's only api pod
	// turns not ready and its frontend's calls fall back to the other zones' api pods.
	Phase3   time.Duration
	Restarts bool      // restart agents, a flowserver and a costcalc run twice each during phase 1 (Disruptions)
	Hold     bool      // keep running after the summary until ctx ends
	Out      io.Writer // the summary
}

// Main is `make demo`: start, two phases (three with routing: the last plays the advice's risk), the
// summary, the HTML reports, clean-up (also on Ctrl-C).
func Main(ctx context.Context, o MainOptions) (err error) {
	began := time.Now()
	d, err := Start(ctx, o.Options)
	if err != nil {
		return err
	}
	defer func() {
		d.say("cleaning up: stopping processes, removing network namespaces and %s", d.Dir)
		if cerr := d.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	d.say("everything is up after %s; Prometheus UI: http://%s", time.Since(began).Round(time.Second), d.Prom.Addr)
	var disrupt []Disruption
	if o.Restarts {
		disrupt = d.Disruptions(o.Phase1)
	}
	p1, err := d.RunPhase(ctx, 1, o.Phase1, disrupt)
	if err != nil {
		return err
	}
	f1 := FiguresOf(d.Model, p1)
	title1 := "Phase 1: the frontend calls the api in every zone"
	if d.Routing != nil {
		title1 = "Phase 1: the frontend calls the api Service; kube-proxy spreads the calls over every zone"
	}
	PrintPhase(o.Out, d.Model, title1, f1)
	advised := time.Now()
	adv, err := d.Advise(ctx, p1.Start.At, p1.End.At, "table")
	if err != nil {
		return err
	}
	d.say("costcalc advise took %s", time.Since(advised).Round(time.Millisecond))
	PrintAdvice(o.Out, adv)
	var advJSON []byte
	if d.Routing != nil {
		if advJSON, err = d.Advise(ctx, p1.Start.At, p1.End.At, "json"); err != nil {
			return err
		}
		if err := d.ApplyAdvice(ctx, advJSON); err != nil {
			return err
		}
	}
	p2, err := d.RunPhase(ctx, 2, o.Phase2, nil)
	if err != nil {
		return err
	}
	f2 := FiguresOf(d.Model, p2)
	last := p2
	if d.Routing != nil {
		PrintPhase(o.Out, d.Model, "Phase 2: the same calls, the api Service patched to PreferSameZone (kube-proxy routes in zone)", f2)
		PrintDrop(o.Out, f1, f2)
		if err := PrintSaving(o.Out, d.Model, f1, f2, advJSON); err != nil {
			return err
		}
		if o.Phase3 > 0 {
			zone := d.Model.Zones[len(d.Model.Zones)-1]
			if err := d.LoseEndpoint(ctx, zone); err != nil {
				return err
			}
			if last, err = d.RunPhase(ctx, 3, o.Phase3, nil); err != nil {
				return err
			}
			if err := PrintRisk(o.Out, d.Model, last, FiguresOf(d.Model, last), zone, advJSON); err != nil {
				return err
			}
		}
	} else {
		PrintPhase(o.Out, d.Model, "Phase 2: the frontend calls only its own zone's api (topology-aware routing)", f2)
		PrintDrop(o.Out, f1, f2)
	}

	if err := os.MkdirAll(d.opts.OutDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", d.opts.OutDir, err)
	}
	fmt.Fprintf(o.Out, "\nReports by costcalc report over every phase (from Prometheus):\n")
	for _, cloud := range Clouds {
		path := filepath.Join(d.opts.OutDir, "report-"+cloud+".html")
		if err := d.Report(ctx, cloud, p1.Start.At, last.End.At, "html", path); err != nil {
			return err
		}
		fmt.Fprintf(o.Out, "  %-5s file://%s\n", cloud, path)
	}
	fmt.Fprintf(o.Out, "Prometheus UI: http://%s (try: sum by (src_zone, dst_zone) (rate(zonetoll_zone_traffic_bytes_total[1m])))\n", d.Prom.Addr)
	if o.Hold {
		fmt.Fprintf(o.Out, "  it runs until you press Ctrl-C; so do the services (addresses in %s/prometheus.yml)\n", d.Dir)
	} else {
		fmt.Fprintf(o.Out, "  it stops when the demo exits now: run with --hold to keep everything up and browse it\n")
	}
	if o.KeepDir || o.Hold {
		fmt.Fprintf(o.Out, "Logs of every process and the flowservers' flow logs: %s\n", d.Dir)
	} else {
		fmt.Fprintf(o.Out, "Logs of every process and the flowservers' flow logs: removed at exit (--keep keeps them)\n")
	}
	for _, e := range d.Events {
		fmt.Fprintf(o.Out, "During phase 1: %s\n", e)
	}
	fmt.Fprintf(o.Out, "The demo took %s.\n", time.Since(began).Round(time.Second))
	if o.Hold {
		fmt.Fprintf(o.Out, "\nEverything keeps running; press Ctrl-C to stop and clean up.\n")
		<-ctx.Done()
	}
	return nil
}

// Report runs `costcalc report` against the demo's Prometheus for [start, end] into path.
func (d *Demo) Report(ctx context.Context, cloud string, start, end time.Time, format, path string) error {
	_, err := d.costcalc(ctx, "report", start, end, "--cloud", cloud, "--format", format, "--output", path)
	return err
}

// Advise runs `costcalc advise` against the demo's Prometheus for [start, end] and returns what it
// wrote: the Service view and the advice, in format (table, json or html).
func (d *Demo) Advise(ctx context.Context, start, end time.Time, format string) ([]byte, error) {
	return d.costcalc(ctx, "advise", start, end, "--format", format)
}

// costcalc runs one of costcalc's commands that read a Prometheus query API, over [start, end], and
// returns its standard output.
func (d *Demo) costcalc(ctx context.Context, command string, start, end time.Time, args ...string) ([]byte, error) {
	args = append([]string{command, "--prometheus", "http://" + d.Prom.Addr,
		"--start", start.UTC().Format(time.RFC3339Nano), "--end", end.UTC().Format(time.RFC3339Nano)}, args...)
	cmd := exec.CommandContext(ctx, d.bin("costcalc"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("costcalc %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}
