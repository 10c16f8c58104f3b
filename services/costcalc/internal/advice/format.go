package advice

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/readable"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/render"
)

// Formats the advice is written in.
var Formats = []string{"table", "json", "html"}

// Write writes r in format.
func Write(w io.Writer, r *Result, format string) error {
	return render.Write(w, format, Formats, r, render.Writers{
		"table": func(w io.Writer) error { return writeTable(w, r) },
		"html":  func(w io.Writer) error { return writePage(w, r) },
	})
}

// Title is the one-line summary every format starts with.
func (r *Result) Title() string {
	return fmt.Sprintf("Service advice, %s to %s (%s)", r.Start.UTC().Format(time.RFC3339), r.End.UTC().Format(time.RFC3339), readable.Duration(r.End.Sub(r.Start)))
}

// KubernetesLine says which version the advice is for and why that setting.
func (r *Result) KubernetesLine() string {
	v := "version unknown"
	if r.Kubernetes != "" {
		v = r.Kubernetes + " (from " + r.KubeSource + ")"
	}
	return fmt.Sprintf("Kubernetes %s: recommended %s. %s", v, r.Recommended, r.RecommendNote)
}

// Groups of Services as the formats list them.
func (r *Result) group(verdicts ...string) []ServiceAdvice {
	var out []ServiceAdvice
	for _, s := range r.Services {
		for _, v := range verdicts {
			if s.Verdict == v {
				out = append(out, s)
			}
		}
	}
	return out
}

// Advised are the Services to switch (or that would save nothing yet).
func (r *Result) Advised() []ServiceAdvice {
	return r.group(VerdictSwitch, VerdictSwitchWithCare, VerdictNoSaving)
}

// Already are the Services that prefer the zone and still cross.
func (r *Result) Already() []ServiceAdvice { return r.group(VerdictAlready) }

// NotApplicable are the Services no setting helps.
func (r *Result) NotApplicable() []ServiceAdvice { return r.group(VerdictNotApplicable) }

// VerdictText is a verdict for people.
func VerdictText(v string) string {
	switch v {
	case VerdictSwitch:
		return "switch"
	case VerdictSwitchWithCare:
		return "switch with care (see risks)"
	case VerdictNoSaving:
		return "no saving yet"
	case VerdictAlready:
		return "already prefers the zone, still crossing"
	}
	return "not applicable"
}

func zoneText(z string) string {
	if z == "" {
		return "(unknown)"
	}
	return z
}

func pctOrDash(f float64, ok bool) string {
	if !ok {
		return "-"
	}
	return pct(f)
}

func writeTable(w io.Writer, r *Result) error {
	fmt.Fprintln(w, r.Title())
	fmt.Fprintln(w, r.KubernetesLine())
	fmt.Fprintf(w, "Risk thresholds: --overload-ratio %g, --min-endpoints %d. Monthly = the range's rate over %d days.\n\n", r.Options.OverloadRatio, r.Options.MinEndpoints, r.MonthDays)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "PER MONTH\t%s\n", strings.Join(r.Clouds, "\t"))
	var cross, saving []string
	for _, t := range r.Totals {
		cross, saving = append(cross, readable.Dollars(t.CrossMonthly)), append(saving, readable.Dollars(t.SavingMonthly))
	}
	fmt.Fprintf(tw, "cross-zone bytes to Services\t%s\n", strings.Join(cross, "\t"))
	fmt.Fprintf(tw, "saving of the advised switches\t%s\n", strings.Join(saving, "\t"))
	tw.Flush()
	fmt.Fprintf(w, "%d Service(s) with cross-zone bytes; %d without.\n", len(r.Services), r.QuietServices)
	for _, n := range r.Notes {
		fmt.Fprintln(w, "Note: "+n)
	}
	sections := []struct {
		title string
		list  []ServiceAdvice
	}{{"Advice", r.Advised()}, {"Already preferring the zone but still crossing", r.Already()}, {"Not applicable", r.NotApplicable()}}
	for _, sec := range sections {
		if len(sec.list) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n== %s ==\n", sec.title)
		for i, s := range sec.list {
			writeService(w, r, i+1, s)
		}
	}
	return nil
}

func writeService(w io.Writer, r *Result, n int, s ServiceAdvice) {
	fmt.Fprintf(w, "\n%d. %s/%s — %s\n", n, s.Namespace, s.Service, VerdictText(s.Verdict))
	fmt.Fprintf(w, "   setting: %s; %s\n", s.Setting, s.HintsSummary)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   ZONE\tREADY ENDPOINTS\tCLIENT TRAFFIC\tCLIENT SHARE\tCROSSING ZONES")
	for _, z := range s.Zones {
		fmt.Fprintf(tw, "   %s\t%d (%s)\t%s\t%s\t%s\n", zoneText(z.Zone), z.ReadyEndpoints, pct(z.EndpointShare), readable.Size(z.ClientBytes), pctOrDash(z.ClientShare, z.Zone != ""), readable.Size(z.CrossBytes))
	}
	tw.Flush()
	var cross, saving []string
	for _, c := range s.Clouds {
		cross = append(cross, c.Cloud+" "+readable.Dollars(c.CrossMonthly))
		saving = append(saving, c.Cloud+" "+readable.Dollars(c.SavingMonthly))
	}
	fmt.Fprintf(w, "   cross-zone: %s in the range; per month %s\n", readable.Size(s.CrossBytes), strings.Join(cross, ", "))
	switch s.Verdict {
	case VerdictAlready:
		fmt.Fprintf(w, "   of it, from zones with a local endpoint: %s, per month %s\n", readable.Size(s.SavableBytes), strings.Join(saving, ", "))
	case VerdictNotApplicable:
	default:
		fmt.Fprintf(w, "   same-zone routing would keep %s in zone: per month %s\n", readable.Size(s.SavableBytes), strings.Join(saving, ", "))
	}
	for _, rk := range s.Risks {
		fmt.Fprintf(w, "   risk: %s\n", rk.Message)
	}
	for _, reason := range s.Reasons {
		fmt.Fprintf(w, "   why: %s\n", reason)
	}
	if s.Recommendation != nil {
		fmt.Fprintf(w, "   recommended: %s\n", s.Recommendation.Setting)
		for _, c := range s.Recommendation.Commands {
			fmt.Fprintf(w, "   apply: %s\n", c)
		}
		fmt.Fprintf(w, "   safeguard: %s\n", s.Recommendation.Safeguard)
	}
}

// The section is shared by `advise --format html` and the report page; it uses the page's CSS classes.
var section = template.Must(template.New("advice").Funcs(template.FuncMap{
	"size": readable.Size, "dollars": readable.Dollars, "pct": pct, "zone": zoneText, "verdict": VerdictText,
	"share": pctOrDash,
}).Parse(`<section id="services">
<h2>Services: cross-zone bytes and advice</h2>
<p class="muted">{{.R.KubernetesLine}} Risk thresholds: overload ratio {{.R.Options.OverloadRatio}}, at least {{.R.Options.MinEndpoints}} ready endpoints. Monthly = the range's rate over {{.R.MonthDays}} days.</p>
<table id="service-totals"><tr><th>Per month</th>{{range .R.Clouds}}<th class="n">{{.}}</th>{{end}}</tr>
<tr><td>cross-zone bytes to Services</td>{{range .R.Totals}}<td class="n">{{dollars .CrossMonthly}}</td>{{end}}</tr>
<tr><td>saving of the advised switches</td>{{range .R.Totals}}<td class="n saving">{{dollars .SavingMonthly}}</td>{{end}}</tr></table>
<p class="muted">{{len .R.Services}} Service(s) with cross-zone bytes; {{.R.QuietServices}} without.{{range .R.Notes}} {{.}}{{end}}</p>
{{range .R.Services}}<div class="service" data-service="{{.Namespace}}/{{.Service}}" data-verdict="{{.Verdict}}">
<h3>{{.Namespace}}/{{.Service}} — {{verdict .Verdict}}</h3>
<div class="muted">setting: {{.Setting}}; {{.HintsSummary}}</div>
<table class="zones"><tr><th>Zone</th><th class="n">Ready endpoints</th><th class="n">Client traffic</th><th class="n">Client share</th><th class="n">Crossing zones</th></tr>
{{range .Zones}}<tr><td>{{zone .Zone}}</td><td class="n">{{.ReadyEndpoints}} ({{pct .EndpointShare}})</td><td class="n">{{size .ClientBytes}}</td><td class="n">{{share .ClientShare (ne .Zone "")}}</td><td class="n">{{size .CrossBytes}}</td></tr>
{{end}}</table>
<table class="clouds"><tr><th>Cloud</th><th class="n">Cross-zone per month</th><th class="n">Saving per month</th></tr>
{{range .Clouds}}<tr data-cloud="{{.Cloud}}"><td>{{.Cloud}}</td><td class="n cross">{{dollars .CrossMonthly}}</td><td class="n saving">{{dollars .SavingMonthly}}</td></tr>
{{end}}</table>
<p>Crossing: {{size .CrossBytes}}; same-zone routing would keep {{size .SavableBytes}} in zone.</p>
{{if .Risks}}<ul class="risks">{{range .Risks}}<li class="risk" data-kind="{{.Kind}}">{{.Message}}</li>{{end}}</ul>{{end}}
{{if .Reasons}}<ul class="reasons">{{range .Reasons}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{with .Recommendation}}<p>Recommended: <b>{{.Setting}}</b></p>{{range .Commands}}<pre class="command">{{.}}</pre>{{end}}<p class="muted">{{.Safeguard}}</p>{{end}}
</div>
{{end}}</section>
`))

// HTMLSection renders the Service view and advice for embedding in a page.
func HTMLSection(r *Result) (template.HTML, error) {
	var b bytes.Buffer
	if err := section.Execute(&b, struct{ R *Result }{r}); err != nil {
		return "", err
	}
	return template.HTML(b.String()), nil // #nosec: built by html/template, escaped there
}

// Style is the CSS the section needs, for pages that embed it.
const Style = `.service{border-top:1px solid #d5dbe3;margin-top:1.5em}
h3{font-size:1em;margin-bottom:.2em}
pre.command{background:#f3f4f6;padding:.5em .8em;border-radius:6px;white-space:pre-wrap}
li.risk{color:#9a3412}`

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em;color:#1d2733;max-width:1100px}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.1em;margin-top:2em}
.muted{color:#5b6776;font-size:.9em}
table{border-collapse:collapse;font-size:.9em;margin-top:.5em}
th,td{border-bottom:1px solid #e3e7ec;padding:.3em .7em;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
{{.Style}}
</style></head>
<body>
<h1>{{.Title}}</h1>
{{.Section}}
</body></html>
`))

func writePage(w io.Writer, r *Result) error {
	sec, err := HTMLSection(r)
	if err != nil {
		return err
	}
	return pageTemplate.Execute(w, struct {
		Title   string
		Style   template.CSS
		Section template.HTML
	}{r.Title(), template.CSS(Style), sec})
}
