// Package pricing turns bytes into dollars the way each cloud bills them. Prices are data: one embedded
// preset file per cloud, each row with its source and the date it was read, and the unit (GB or GiB)
// the prices are quoted in. Users override any row from a file or a setting.
package pricing

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v2"
)

//go:embed presets/*.yaml
var presetFiles embed.FS

// Unit is what a price is quoted per. GB and GiB differ by 7.4 %, so a table always names its unit.
type Unit string

// The units a table may use.
const (
	GB  Unit = "GB"  // 10^9 bytes
	GiB Unit = "GiB" // 2^30 bytes
)

// Bytes is the number of bytes in one unit.
func (u Unit) Bytes() float64 {
	switch u {
	case GB:
		return 1e9
	case GiB:
		return 1 << 30
	}
	return 0
}

// ParseUnit accepts GB or GiB, in any case.
func ParseUnit(s string) (Unit, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "gb":
		return GB, nil
	case "gib":
		return GiB, nil
	}
	return "", fmt.Errorf("unknown unit %q: expected GB (10^9 bytes) or GiB (2^30 bytes)", s)
}

// Class is the kind of crossing a flow makes, which decides its price row.
type Class string

// Classes of traffic. SameZone is free everywhere; Unpriced traffic has an end whose place is unknown
// and is counted and reported rather than billed at a guessed price.
const (
	SameZone    Class = "same_zone"
	InterZone   Class = "inter_zone"
	InterRegion Class = "inter_region"
	Internet    Class = "internet"
	Unpriced    Class = "unpriced"
)

// Direction says which side of a transfer a price is charged to.
type Direction string

// Out is charged for bytes a workload sends, In for bytes it receives.
const (
	Out Direction = "out"
	In  Direction = "in"
)

// PricedClasses are the classes that have rows, in table order.
var PricedClasses = []Class{InterZone, InterRegion, Internet}

// Directions in table order.
var Directions = []Direction{Out, In}

// Row is one price: dollars per Unit of traffic of a class, charged to one side.
type Row struct {
	Class     Class     `yaml:"class" json:"class"`
	Direction Direction `yaml:"direction" json:"direction"`
	Price     float64   `yaml:"price" json:"price"`
	Source    string    `yaml:"source" json:"source"`             // the provider's pricing page title, or where an override came from
	URL       string    `yaml:"url,omitempty" json:"url"`         // the page
	Read      string    `yaml:"read,omitempty" json:"read"`       // the date a person checked the figure (YYYY-MM-DD); "" when nobody has
	Checked   string    `yaml:"checked,omitempty" json:"checked"` // who checked it, when and against what; or that nobody did
}

// Key names the row in overrides: inter_zone_out, internet_in, ...
func (r Row) Key() string { return string(r.Class) + "_" + string(r.Direction) }

// Table is a complete price list: one row for every priced class and direction.
type Table struct {
	Cloud    string `yaml:"cloud" json:"cloud"`
	Currency string `yaml:"currency" json:"currency"`
	Unit     Unit   `yaml:"unit" json:"unit"`
	Rows     []Row  `yaml:"rows" json:"rows"`
}

// Clouds lists the presets, sorted.
func Clouds() []string {
	entries, err := presetFiles.ReadDir("presets")
	if err != nil {
		panic(err) // embedded at build time
	}
	var out []string
	for _, e := range entries {
		out = append(out, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(out)
	return out
}

// ErrUnknownCloud is returned by Preset for a cloud without a preset.
var ErrUnknownCloud = errors.New("unknown cloud")

// Preset returns the embedded price table of cloud (aws, gcp, azure).
func Preset(cloud string) (*Table, error) {
	data, err := presetFiles.ReadFile("presets/" + cloud + ".yaml")
	if err != nil || cloud == "" || strings.ContainsAny(cloud, "/.") {
		return nil, fmt.Errorf("%w %q: expected one of %s", ErrUnknownCloud, cloud, strings.Join(Clouds(), ", "))
	}
	var t Table
	if err := decodeStrict(data, &t); err != nil {
		return nil, fmt.Errorf("reading preset %s: %w", cloud, err)
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("preset %s: %w", cloud, err)
	}
	return &t, nil
}

// Validate checks that the table has a unit and exactly one valid row per class and direction.
func (t *Table) Validate() error {
	if t.Unit.Bytes() == 0 {
		return fmt.Errorf("unit %q: expected GB (10^9 bytes) or GiB (2^30 bytes)", t.Unit)
	}
	seen := map[string]bool{}
	for _, r := range t.Rows {
		if !slices.Contains(PricedClasses, r.Class) || !slices.Contains(Directions, r.Direction) {
			return fmt.Errorf("row %q: expected class one of %v and direction out or in", r.Key(), PricedClasses)
		}
		if seen[r.Key()] {
			return fmt.Errorf("row %s appears twice", r.Key())
		}
		seen[r.Key()] = true
		if err := checkPrice(r.Price); err != nil {
			return fmt.Errorf("row %s: %w", r.Key(), err)
		}
		if r.Source == "" {
			return fmt.Errorf("row %s has no source", r.Key())
		}
	}
	for _, c := range PricedClasses {
		for _, d := range Directions {
			if key := string(c) + "_" + string(d); !seen[key] {
				return fmt.Errorf("row %s is missing", key)
			}
		}
	}
	return nil
}

func checkPrice(p float64) error {
	if math.IsNaN(p) || math.IsInf(p, 0) {
		return fmt.Errorf("price %v is not a number", p)
	}
	if p < 0 {
		return fmt.Errorf("price %v is negative", p)
	}
	return nil
}

// ParsePrice reads a price in dollars per unit; it must be a finite number of at least 0.
func ParsePrice(s string) (float64, error) {
	p, err := strconv.ParseFloat(strings.TrimPrefix(strings.TrimSpace(s), "$"), 64)
	if err != nil {
		return 0, fmt.Errorf("price %q is not a number (expected dollars per unit, e.g. 0.01)", s)
	}
	if math.IsNaN(p) || math.IsInf(p, 0) {
		return 0, fmt.Errorf("price %q is not a number (expected dollars per unit, e.g. 0.01)", s)
	}
	if p < 0 {
		return 0, fmt.Errorf("price %q is negative (expected dollars per unit, at least 0)", s)
	}
	return p, nil
}

// Row returns the row of class and direction.
func (t *Table) Row(c Class, d Direction) Row {
	for _, r := range t.Rows {
		if r.Class == c && r.Direction == d {
			return r
		}
	}
	return Row{Class: c, Direction: d}
}

// PerByte is the price of one byte of class charged to direction, in dollars.
func (t *Table) PerByte(c Class, d Direction) float64 {
	return t.Row(c, d).Price / t.Unit.Bytes()
}

// Set overrides the row named key (inter_zone_out, ...) with price, recording source as where it came from.
func (t *Table) Set(key string, price float64, source string) error {
	if err := checkPrice(price); err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	for i, r := range t.Rows {
		if r.Key() == key {
			t.Rows[i] = Row{Class: r.Class, Direction: r.Direction, Price: price, Source: source}
			return nil
		}
	}
	return fmt.Errorf("unknown price %q: expected one of %s", key, strings.Join(t.Keys(), ", "))
}

// Keys lists the row names in table order.
func (t *Table) Keys() []string {
	var keys []string
	for _, c := range PricedClasses {
		for _, d := range Directions {
			keys = append(keys, string(c)+"_"+string(d))
		}
	}
	return keys
}

// Override is the content of a user's override file: optionally the unit, and any rows to replace.
type Override struct {
	Unit Unit  `yaml:"unit"`
	Rows []Row `yaml:"rows"`
}

// ApplyFile reads an override file (YAML, like the presets) and applies it to t. Rows without a source
// are recorded as coming from the file.
func (t *Table) ApplyFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading price overrides: %w", err)
	}
	var o Override
	if err := decodeStrict(data, &o); err != nil {
		return fmt.Errorf("reading price overrides %s: %w", path, err)
	}
	if o.Unit != "" {
		u, err := ParseUnit(string(o.Unit))
		if err != nil {
			return fmt.Errorf("price overrides %s: %w", path, err)
		}
		t.Unit = u
	}
	for _, r := range o.Rows {
		source := r.Source
		if source == "" {
			source = "override file " + path
		}
		if err := t.Set(r.Key(), r.Price, source); err != nil {
			return fmt.Errorf("price overrides %s: %w", path, err)
		}
		if r.URL != "" || r.Read != "" || r.Checked != "" {
			for i := range t.Rows {
				if t.Rows[i].Key() == r.Key() {
					t.Rows[i].URL, t.Rows[i].Read, t.Rows[i].Checked = r.URL, r.Read, r.Checked
				}
			}
		}
	}
	return nil
}

// Options say which preset to start from and what to override, from flags or settings.
type Options struct {
	Cloud     string            // preset name
	Unit      string            // GB or GiB; empty keeps the preset's
	File      string            // override file; empty for none
	FileInput string            // name of the file input for errors ("flag --prices-file", "ZONETOLL_PRICES_FILE")
	Prices    map[string]string // row key → price, applied last
	Origin    string            // where Prices came from, for the rows' source ("flag --price", "ZONETOLL_PRICES")
	UnitInput string            // name of the unit input for errors
}

// Load builds the table Options describe: the preset, then the file, then the unit, then single prices.
// Errors name the input that was wrong.
func Load(o Options) (*Table, error) {
	t, err := Preset(o.Cloud)
	if err != nil {
		return nil, err
	}
	if o.File != "" {
		if err := t.ApplyFile(o.File); err != nil {
			if o.FileInput != "" {
				err = fmt.Errorf("%s: %w", o.FileInput, err)
			}
			return nil, err
		}
	}
	if o.Unit != "" {
		u, err := ParseUnit(o.Unit)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.UnitInput, err)
		}
		t.Unit = u
	}
	keys := make([]string, 0, len(o.Prices))
	for k := range o.Prices {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p, err := ParsePrice(o.Prices[k])
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.Origin, k, err)
		}
		if err := t.Set(k, p, o.Origin); err != nil {
			return nil, fmt.Errorf("%s: %w", o.Origin, err)
		}
	}
	return t, t.Validate()
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.SetStrict(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
