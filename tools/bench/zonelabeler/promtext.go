// Package zonelabeler benchmarks the zonelabeler binary against a real kube-apiserver (tools/testcluster):
// 100 nodes in 3 zones, N pods created as fast as the API server takes them or at a fixed rate, and the
// figures issue 5 asks for — time until all pods are labelled, binding→label latency, writes per pod,
// peak RSS and CPU seconds of the labeler. The labeler runs as its own process (the real binary), so its
// memory and CPU are its own and not the benchmark's.
//
// Run it with go test -bench (see docs/benchmarks.md); the files here are the measuring helpers.
package zonelabeler

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// parseText reads the Prometheus text exposition format. It is deliberately small: the benchmark reads
// a few counters and one histogram, and tools/go.mod stays free of the Prometheus modules.
func parseText(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("parsing metrics line %d %q: %w", n, line, err)
		}
		out = append(out, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	return out, nil
}

func parseLine(line string) (sample, error) {
	s := sample{labels: map[string]string{}}
	end := strings.IndexAny(line, "{ \t")
	if end <= 0 {
		return s, fmt.Errorf("no value")
	}
	s.name = line[:end]
	rest := line[end:]
	if rest[0] == '{' {
		var err error
		if rest, err = parseLabels(rest[1:], s.labels); err != nil {
			return s, err
		}
	}
	fields := strings.Fields(rest) // value, then an optional timestamp
	if len(fields) == 0 {
		return s, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return s, fmt.Errorf("value: %w", err)
	}
	s.value = v
	return s, nil
}

// parseLabels reads `name="value",...}` into into and returns what follows the closing brace.
func parseLabels(in string, into map[string]string) (string, error) {
	for {
		in = strings.TrimLeft(in, " ,")
		if strings.HasPrefix(in, "}") {
			return in[1:], nil
		}
		eq := strings.IndexByte(in, '=')
		if eq <= 0 || len(in) < eq+2 || in[eq+1] != '"' {
			return "", fmt.Errorf("malformed label near %q", in)
		}
		name := strings.TrimSpace(in[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(in) && in[i] != '"'; i++ {
			if in[i] == '\\' && i+1 < len(in) {
				i++
				switch in[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(in[i])
				}
				continue
			}
			val.WriteByte(in[i])
		}
		if i >= len(in) {
			return "", fmt.Errorf("unterminated value of label %s", name)
		}
		into[name] = val.String()
		in = in[i+1:]
	}
}

// sum adds the values of every sample called name whose labels include match (a label missing from a
// sample counts as ""), as PromQL's sum() over a selector would.
func sum(samples []sample, name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range samples {
		if s.name == name && matches(s.labels, match) {
			total += s.value
		}
	}
	return total
}

func matches(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// histogramQuantile estimates the q-quantile of histogram name from its cumulative buckets the way
// PromQL's histogram_quantile does: linear interpolation inside the bucket holding the rank, and the
// highest finite bound when the rank falls in the +Inf bucket, which beyond then reports: the true value
// is only known to be above it. It reports ok false with no observations.
func histogramQuantile(samples []sample, name string, q float64) (v float64, beyond, ok bool) {
	counts := map[float64]float64{}
	for _, s := range samples {
		if s.name != name+"_bucket" {
			continue
		}
		le, err := strconv.ParseFloat(s.labels["le"], 64)
		if err != nil {
			continue
		}
		counts[le] += s.value
	}
	bounds := make([]float64, 0, len(counts))
	for le := range counts {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || !math.IsInf(bounds[len(bounds)-1], 1) {
		return 0, false, false
	}
	total := counts[bounds[len(bounds)-1]]
	if total == 0 {
		return 0, false, false
	}
	rank := q * total
	lower, below := 0.0, 0.0
	for i, upper := range bounds {
		c := counts[upper]
		if c >= rank {
			if math.IsInf(upper, 1) {
				if i == 0 {
					return 0, false, false
				}
				return bounds[i-1], true, true
			}
			if c == below {
				return upper, false, true
			}
			return lower + (upper-lower)*(rank-below)/(c-below), false, true
		}
		lower, below = upper, c
	}
	// The rank is above the total: only a q over 1 gets here.
	if len(bounds) < 2 {
		return 0, false, false
	}
	return bounds[len(bounds)-2], true, true
}
