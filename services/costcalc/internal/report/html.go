package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"

	"github.com/zonetoll/zonetoll/services/costcalc/internal/advice"
	"github.com/zonetoll/zonetoll/services/costcalc/internal/pricing"
)

// The page is one file with inline CSS and SVG: no scripts, fonts or images from anywhere, so it opens
// offline, mails as an attachment and renders the same in a headless browser.
var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{{.R.Title}}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em;color:#1d2733;max-width:1100px}
h1{font-size:1.4em;margin-bottom:.2em} h2{font-size:1.1em;margin-top:2em}
.muted{color:#5b6776;font-size:.9em}
.cards{display:flex;gap:1em;margin:1.2em 0}
.card{border:1px solid #d5dbe3;border-radius:8px;padding:.8em 1.2em;min-width:12em}
.card .v{font-size:1.8em;font-weight:600}
table{border-collapse:collapse;font-size:.9em;margin-top:.5em}
th,td{border-bottom:1px solid #e3e7ec;padding:.3em .7em;text-align:left}
td:last-child{white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-family:inherit;font-size:12px}
{{.AdviceStyle}}
</style></head>
<body>
<h1>{{.R.Title}}</h1>
<div class="muted">Prometheus {{.R.Prometheus}} · method {{.R.Method}} · {{.R.Prices.Cloud}} prices per {{.R.Prices.Unit}}</div>
<div class="cards">
<div class="card"><div class="muted">Cost in range</div><div class="v" id="total">{{.Total}}</div></div>
<div class="card"><div class="muted">Monthly projection ({{.R.MonthDays}} days)</div><div class="v" id="monthly">{{.Monthly}}</div></div>
<div class="card"><div class="muted">Crossing pairs</div><div class="v" id="pair-count">{{.R.PairCount}}</div></div>
</div>

<h2>Zone pairs: cost in range (rows send, columns receive)</h2>
<svg id="heatmap" xmlns="http://www.w3.org/2000/svg" width="{{.Heat.Width}}" height="{{.Heat.Height}}" role="img" aria-label="zone pair heat map">
{{range .Heat.Labels}}<text x="{{.X}}" y="{{.Y}}" text-anchor="{{.Anchor}}" font-weight="600">{{.Text}}</text>
{{end}}{{range .Heat.Cells}}<g class="cell" data-src="{{.Src}}" data-dst="{{.Dst}}">
<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="{{.Fill}}" stroke="#ffffff"/>
<text x="{{.TX}}" y="{{.TY}}" text-anchor="middle" fill="{{.Ink}}">{{.Dollars}}</text>
<text x="{{.TX}}" y="{{.TY2}}" text-anchor="middle" fill="{{.Ink}}" font-size="10">{{.Volume}}</text>
</g>
{{end}}</svg>

<h2>Top workload pairs by cost</h2>
<svg id="top-pairs" xmlns="http://www.w3.org/2000/svg" width="{{.Bars.Width}}" height="{{.Bars.Height}}" role="img" aria-label="top workload pairs">
{{range .Bars.Bars}}<g class="bar">
<text x="{{.LX}}" y="{{.TY}}" text-anchor="end">{{.Label}}</text>
<rect x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}" fill="#c2410c" rx="3"/>
<text x="{{.VX}}" y="{{.TY}}">{{.Dollars}}</text>
</g>
{{end}}</svg>

<table id="pairs">
<tr><th>#</th><th>Source</th><th>Src zone</th><th>Destination</th><th>Dst zone</th><th>Class</th><th class="n">Traffic</th><th class="n">Cost</th><th class="n">Per month</th></tr>
{{range $i, $p := .Pairs}}<tr><td>{{$p.N}}</td><td>{{$p.Src}}</td><td>{{$p.SrcZone}}</td><td>{{$p.Dst}}</td><td>{{$p.DstZone}}</td><td>{{$p.Class}}</td><td class="n">{{$p.Volume}}</td><td class="n cost">{{$p.Dollars}}</td><td class="n">{{$p.Monthly}}</td></tr>
{{end}}</table>

{{if .Services}}{{.Services}}{{else}}<h2>Services</h2>
<p id="no-services" class="muted">{{.R.NoServices}}</p>{{end}}

<h2>By class</h2>
<table id="classes"><tr><th>Class</th><th class="n">Traffic</th><th class="n">Cost</th></tr>
{{range .Classes}}<tr><td>{{.Class}}</td><td class="n">{{.Volume}}</td><td class="n">{{.Dollars}}</td></tr>
{{end}}</table>
{{if .Unpriced}}
<h2>Not priced</h2>
<p class="muted">An end's zone or region is unknown, so this traffic is in no total above.</p>
<table id="unpriced"><tr><th>Source</th><th>Src zone</th><th>Destination</th><th>Dst zone</th><th>Reason</th><th class="n">Traffic</th></tr>
{{range .Unpriced}}<tr><td>{{.Src}}</td><td>{{.SrcZone}}</td><td>{{.Dst}}</td><td>{{.DstZone}}</td><td>{{.Class}}</td><td class="n">{{.Volume}}</td></tr>
{{end}}</table>{{end}}

<h2>Prices</h2>
<table id="prices"><tr><th>Row</th><th class="n">Price</th><th>Source</th><th>Checked</th></tr>
{{range .Prices}}<tr><td>{{.Key}}</td><td class="n">{{.Price}}</td><td>{{if .URL}}<a href="{{.URL}}">{{.Source}}</a>{{else}}{{.Source}}{{end}}</td><td>{{.Read}}{{if .Checked}}<div class="muted">{{.Checked}}</div>{{end}}</td></tr>
{{end}}</table>
</body></html>
`))

type htmlLabel struct {
	X, Y         int
	Anchor, Text string
}

type htmlCell struct {
	Src, Dst, Fill, Ink, Dollars, Volume string
	X, Y, W, H, TX, TY, TY2              int
}

type htmlBar struct {
	Label, Dollars         string
	LX, X, Y, W, H, VX, TY int
}

type htmlRow struct {
	N                                                           int
	Src, SrcZone, Dst, DstZone, Class, Volume, Dollars, Monthly string
}

type htmlPrice struct{ Key, Price, Source, URL, Read, Checked string }

type htmlClass struct{ Class, Volume, Dollars string }

func writeHTML(w io.Writer, r *Report) error {
	data := struct {
		R              *Report
		Total, Monthly string
		Heat           struct {
			Width, Height int
			Labels        []htmlLabel
			Cells         []htmlCell
		}
		Bars struct {
			Width, Height int
			Bars          []htmlBar
		}
		Pairs, Unpriced []htmlRow
		Classes         []htmlClass
		Prices          []htmlPrice
		Services        template.HTML
		AdviceStyle     template.CSS
	}{R: r, Total: Dollars(r.Total), Monthly: Dollars(r.Monthly), AdviceStyle: template.CSS(advice.Style)}
	if r.Services != nil {
		sec, err := advice.HTMLSection(r.Services)
		if err != nil {
			return err
		}
		data.Services = sec
	}

	const cw, ch, left, topMargin = 120, 48, 130, 24
	data.Heat.Width = left + cw*len(r.Zones) + 10
	data.Heat.Height = topMargin + ch*len(r.Zones) + 10
	var maxCost float64
	for _, zp := range r.ZonePairs {
		maxCost = math.Max(maxCost, zp.Dollars)
	}
	for i, z := range r.Zones {
		data.Heat.Labels = append(data.Heat.Labels,
			htmlLabel{X: left + cw*i + cw/2, Y: topMargin - 8, Anchor: "middle", Text: z},
			htmlLabel{X: left - 8, Y: topMargin + ch*i + ch/2 + 4, Anchor: "end", Text: z})
	}
	for i, src := range r.Zones {
		for j, dst := range r.Zones {
			c := htmlCell{Src: src, Dst: dst, X: left + cw*j, Y: topMargin + ch*i, W: cw, H: ch, Fill: "#f3f4f6", Ink: "#9ca3af", Dollars: "-"}
			c.TX, c.TY, c.TY2 = c.X+cw/2, c.Y+ch/2, c.Y+ch/2+14
			if zp, ok := r.ZonePair(src, dst); ok {
				c.Dollars, c.Volume, c.Ink = Dollars(zp.Dollars), r.Volume(zp.Bytes), "#111827"
				c.Fill = heat(zp.Dollars, maxCost)
				if zp.Dollars == 0 {
					c.Fill = "#dcfce7" // traffic that costs nothing
				}
				if maxCost > 0 && zp.Dollars/maxCost > 0.55 {
					c.Ink = "#ffffff"
				}
			}
			data.Heat.Cells = append(data.Heat.Cells, c)
		}
	}

	const barLeft, barWidth, barH = 420, 420, 22
	data.Bars.Width, data.Bars.Height = barLeft+barWidth+120, len(r.Pairs)*(barH+8)+10
	var maxPair float64
	for _, p := range r.Pairs {
		maxPair = math.Max(maxPair, p.Dollars)
	}
	for i, p := range r.Pairs {
		b := htmlBar{Label: fmt.Sprintf("%s → %s", short(p.Src), short(p.Dst)), Dollars: Dollars(p.Dollars),
			LX: barLeft - 8, X: barLeft, Y: 5 + i*(barH+8), H: barH}
		if maxPair > 0 {
			b.W = int(math.Max(1, p.Dollars/maxPair*barWidth))
		}
		b.VX, b.TY = barLeft+b.W+6, b.Y+barH/2+4
		data.Bars.Bars = append(data.Bars.Bars, b)
	}
	for i, p := range r.Pairs {
		data.Pairs = append(data.Pairs, htmlRow{N: i + 1, Src: endpoint(p.Src), SrcZone: zoneOr(p.Src.Zone), Dst: endpoint(p.Dst), DstZone: zoneOr(p.Dst.Zone),
			Class: string(p.Class), Volume: r.Volume(p.Bytes), Dollars: Dollars(p.Dollars), Monthly: Dollars(p.Monthly)})
	}
	for _, p := range r.Unpriced {
		data.Unpriced = append(data.Unpriced, htmlRow{Src: endpoint(p.Src), SrcZone: zoneOr(p.Src.Zone), Dst: endpoint(p.Dst), DstZone: zoneOr(p.Dst.Zone), Class: p.Reason, Volume: r.Volume(p.Bytes)})
	}
	for _, c := range r.Classes {
		data.Classes = append(data.Classes, htmlClass{Class: string(c.Class), Volume: r.Volume(c.Bytes), Dollars: classDollars(c)})
	}
	for _, row := range r.Prices.Rows {
		data.Prices = append(data.Prices, htmlPrice{Key: row.Key(), Price: "$" + strconv.FormatFloat(row.Price, 'f', -1, 64) + "/" + string(r.Prices.Unit), Source: row.Source, URL: row.URL, Read: checkedOn(row), Checked: row.Checked})
	}
	return page.Execute(w, data)
}

// short names an endpoint in a chart label.
func short(e pricing.Endpoint) string {
	name := endpoint(e)
	if e.Kind == pricing.KindExternal || e.Zone == "" {
		return name
	}
	if e.Namespace != "" {
		name = e.Namespace + "/" + e.Workload
	}
	return name + " (" + e.Zone + ")"
}

// heat maps a cost to a colour from pale amber to deep red.
func heat(v, max float64) string {
	if max <= 0 {
		return "#fef3c7"
	}
	f := v / max
	lerp := func(a, b int) int { return a + int(math.Round(float64(b-a)*f)) }
	return fmt.Sprintf("#%02x%02x%02x", lerp(0xfe, 0x99), lerp(0xf3, 0x1b), lerp(0xc7, 0x1b))
}
