package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Sample is one series of a scrape: its metric name, labels and value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Key is the series' identity: name and sorted labels.
func (s Sample) Key() string {
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(s.Name)
	for _, k := range keys {
		fmt.Fprintf(&b, "|%s=%s", k, s.Labels[k])
	}
	return b.String()
}

// Scrape is the samples of one /metrics page.
type Scrape []Sample

// ParseText reads the Prometheus text exposition format (what every zonetoll service serves): comment
// lines are skipped, each other line is name{labels} value [timestamp].
func ParseText(r io.Reader) (Scrape, error) {
	var out Scrape
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || t[0] == '#' {
			continue
		}
		s, err := parseLine(t)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", line, t, err)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

func parseLine(t string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(t, "{ ")
	if i <= 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name = t[:i]
	rest := t[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			rest = strings.TrimLeft(rest, " ,")
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.IndexByte(rest, '=')
			if eq <= 0 || len(rest) < eq+2 || rest[eq+1] != '"' {
				return s, fmt.Errorf("bad label")
			}
			name := strings.TrimSpace(rest[:eq])
			rest = rest[eq+2:]
			var val strings.Builder
			closed := false
			for j := 0; j < len(rest); j++ {
				c := rest[j]
				if c == '\\' && j+1 < len(rest) {
					j++
					switch rest[j] {
					case 'n':
						val.WriteByte('\n')
					default:
						val.WriteByte(rest[j])
					}
					continue
				}
				if c == '"' {
					rest = rest[j+1:]
					closed = true
					break
				}
				val.WriteByte(c)
			}
			if !closed {
				return s, fmt.Errorf("unterminated label value")
			}
			s.Labels[name] = val.String()
		}
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.Value = v
	return s, nil
}

// Series returns the samples of a metric whose labels include match.
func (sc Scrape) Series(name string, match map[string]string) []Sample {
	var out []Sample
next:
	for _, s := range sc {
		if s.Name != name {
			continue
		}
		for k, v := range match {
			if s.Labels[k] != v {
				continue next
			}
		}
		out = append(out, s)
	}
	return out
}

// Sum adds the values of Series(name, match).
func (sc Scrape) Sum(name string, match map[string]string) float64 {
	var t float64
	for _, s := range sc.Series(name, match) {
		t += s.Value
	}
	return t
}

// Plus returns the samples of sc and o with values of equal series added (for a restarted process:
// its counters before the restart plus those after).
func (sc Scrape) Plus(o Scrape) Scrape {
	idx := map[string]int{}
	out := make(Scrape, 0, len(sc)+len(o))
	for _, s := range append(append(Scrape{}, sc...), o...) {
		k := s.Key()
		if i, ok := idx[k]; ok {
			out[i].Value += s.Value
			continue
		}
		idx[k] = len(out)
		out = append(out, Sample{Name: s.Name, Labels: s.Labels, Value: s.Value})
	}
	return out
}

// Minus returns sc minus o, series by series (a phase's growth from two cumulative scrapes).
func (sc Scrape) Minus(o Scrape) Scrape {
	prev := map[string]float64{}
	for _, s := range o {
		prev[s.Key()] = s.Value
	}
	out := make(Scrape, 0, len(sc))
	for _, s := range sc {
		v := s.Value - prev[s.Key()]
		if math.Abs(v) < 1e-15 {
			v = 0
		}
		out = append(out, Sample{Name: s.Name, Labels: s.Labels, Value: v})
	}
	return out
}

// Fetch scrapes http://addr/metrics, trying again a few times on 503 (too many scrapes at once).
func Fetch(ctx context.Context, addr string) (Scrape, error) {
	for attempt := 1; ; attempt++ {
		sc, err := fetch(ctx, addr)
		if !errors.Is(err, errBusy) || attempt == 5 {
			return sc, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var errBusy = errors.New("503 Service Unavailable")

func fetch(ctx context.Context, addr string) (Scrape, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusServiceUnavailable {
		return nil, fmt.Errorf("scraping %s: %w", addr, errBusy)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: %s", addr, resp.Status)
	}
	sc, err := ParseText(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing /metrics of %s: %w", addr, err)
	}
	return sc, nil
}
