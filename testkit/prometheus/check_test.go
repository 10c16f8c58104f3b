package prometheus

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestExpandVMAgentEnv(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		env     map[string]string
		want    string
		wantErr string
	}{
		{"one placeholder", `regex: "%{ZONE}"`, map[string]string{"ZONE": "us-east-1a"}, `regex: "us-east-1a"`, ""},
		{"repeated and several", "%{ZONE} %{REGION} %{ZONE}", map[string]string{"ZONE": "b", "REGION": "r"}, "b r b", ""},
		{"no placeholder", "regex: a", nil, "regex: a", ""},
		{"shell syntax is not vmagent's", "${ZONE}", map[string]string{"ZONE": "x"}, "${ZONE}", ""},
		{"missing value", "%{ZONE} %{OTHER}", map[string]string{"ZONE": "x"}, "", "OTHER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExpandVMAgentEnv([]byte(tt.in), tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %q, %v; want an error naming %s", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestVMAgentAsPrometheus(t *testing.T) {
	keepZone := map[string]any{"source_labels": []any{"z"}, "regex": "a", "action": "keep"}
	own := map[string]any{"source_labels": []any{"p"}, "target_label": "pod"}
	tests := []struct {
		name    string
		in      string
		want    map[string]any
		wantErr bool
	}{
		{
			name: "global rules go first in every job",
			in: `
global:
  scrape_interval: 30s
  relabel_configs:
    - {source_labels: [z], regex: a, action: keep}
scrape_configs:
  - job_name: one
    relabel_configs:
      - {source_labels: [p], target_label: pod}
  - job_name: two
`,
			want: map[string]any{
				"global": map[string]any{"scrape_interval": "30s"},
				"scrape_configs": []any{
					map[string]any{"job_name": "one", "relabel_configs": []any{keepZone, own}},
					map[string]any{"job_name": "two", "relabel_configs": []any{keepZone}},
				},
			},
		},
		{
			name: "no global rules",
			in: `
scrape_configs:
  - job_name: one
    relabel_configs:
      - {source_labels: [p], target_label: pod}
`,
			want: map[string]any{
				"scrape_configs": []any{map[string]any{"job_name": "one", "relabel_configs": []any{own}}},
			},
		},
		{
			name: "other vmagent fields are left for Prometheus to reject",
			in: `
scrape_configs:
  - job_name: one
    stream_parse: true
`,
			want: map[string]any{
				"scrape_configs": []any{map[string]any{"job_name": "one", "stream_parse": true}},
			},
		},
		{name: "no jobs", in: "global: {relabel_configs: []}\n", wantErr: true},
		{name: "global rules not a list", in: "global: {relabel_configs: x}\nscrape_configs: [{job_name: a}]\n", wantErr: true},
		{name: "job rules not a list", in: "scrape_configs: [{job_name: a, relabel_configs: x}]\n", wantErr: true},
		{name: "not YAML", in: "scrape_configs: [\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := VMAgentAsPrometheus([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %s", out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestTargetDropped(t *testing.T) {
	if !(Target{DiscoveredLabels: map[string]string{"a": "b"}}).Dropped() {
		t.Error("a target without labels after relabelling must count as dropped")
	}
	if (Target{Labels: map[string]string{"job": "x"}}).Dropped() {
		t.Error("a target with labels must not count as dropped")
	}
}
