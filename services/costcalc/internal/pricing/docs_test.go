package pricing

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestDocsListThePresets keeps the presets table of docs/costcalc.md in step with the embedded files.
func TestDocsListThePresets(t *testing.T) {
	doc, err := os.ReadFile("../../../../docs/costcalc.md")
	if err != nil {
		t.Fatal(err)
	}
	p := func(v float64) string { return "$" + strconv.FormatFloat(v, 'f', -1, 64) }
	for _, cloud := range Clouds() {
		table, err := Preset(cloud)
		if err != nil {
			t.Fatal(err)
		}
		var line string
		for _, l := range strings.Split(string(doc), "\n") {
			if strings.HasPrefix(l, "| `"+cloud+"` |") {
				line = l
			}
		}
		if line == "" {
			t.Errorf("docs/costcalc.md has no presets row for %s", cloud)
			continue
		}
		want := []string{"| " + string(table.Unit) + " |"}
		for _, c := range PricedClasses {
			want = append(want, fmt.Sprintf("%s / %s", p(table.Row(c, Out).Price), p(table.Row(c, In).Price)))
		}
		want = append(want, table.Rows[0].URL)
		for _, w := range want {
			if !strings.Contains(line, w) {
				t.Errorf("docs/costcalc.md row of %s lacks %q:\n%s", cloud, w, line)
			}
		}
	}
}
