// Package monitoring checks zonetoll's Prometheus Operator objects (kustomize/components/monitoring):
// the metric names zonetoll exposes, the names a PromQL expression uses, and the queries of Grafana
// dashboards.
package monitoring

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Exposed is every metric family zonetoll's services expose, by type. It is the one list dashboards
// and alerts are checked against; TestExposedMatchesCodeAndDocs keeps it equal to the names in the
// services' code and in the docs. Of the standard collectors only what the dashboards use is listed.
var Exposed = map[string]string{
	// Every service (shared/servicecmd, shared/httpserver).
	"zonetoll_build_info":                    "gauge",
	"zonetoll_http_requests_total":           "counter",
	"zonetoll_http_request_duration_seconds": "histogram",
	"zonetoll_http_requests_in_flight":       "gauge",
	"process_resident_memory_bytes":          "gauge",
	"process_start_time_seconds":             "gauge",

	"zonetoll_zonelabeler_label_writes_total":                          "counter",
	"zonetoll_zonelabeler_binding_to_label_seconds":                    "histogram",
	"zonetoll_zonelabeler_pods_waiting_for_zone":                       "gauge",
	"zonetoll_zonelabeler_nodes":                                       "gauge",
	"zonetoll_zonelabeler_leader":                                      "gauge",
	"zonetoll_zonelabeler_workqueue_depth":                             "gauge",
	"zonetoll_zonelabeler_workqueue_adds_total":                        "counter",
	"zonetoll_zonelabeler_workqueue_queue_duration_seconds":            "histogram",
	"zonetoll_zonelabeler_workqueue_work_duration_seconds":             "histogram",
	"zonetoll_zonelabeler_workqueue_unfinished_work_seconds":           "gauge",
	"zonetoll_zonelabeler_workqueue_longest_running_processor_seconds": "gauge",
	"zonetoll_zonelabeler_workqueue_retries_total":                     "counter",

	"zonetoll_flowagent_drained_bytes_total":             "counter",
	"zonetoll_flowagent_drained_flows_total":             "counter",
	"zonetoll_flowagent_reported_bytes_total":            "counter",
	"zonetoll_flowagent_skipped_bytes_total":             "counter",
	"zonetoll_flowagent_reports_built_total":             "counter",
	"zonetoll_flowagent_reports_sent_total":              "counter",
	"zonetoll_flowagent_dropped_bytes_total":             "counter",
	"zonetoll_flowagent_spool_bytes":                     "gauge",
	"zonetoll_flowagent_spool_reports":                   "gauge",
	"zonetoll_flowagent_report_send_duration_seconds":    "histogram",
	"zonetoll_flowagent_drain_duration_seconds":          "histogram",
	"zonetoll_flowagent_drain_errors_total":              "counter",
	"zonetoll_flowagent_map_insert_failed_packets_total": "counter",
	"zonetoll_flowagent_map_insert_failed_bytes_total":   "counter",
	"zonetoll_flowagent_parse_failed_packets_total":      "counter",
	"zonetoll_flowagent_program_run_seconds_total":       "counter",
	"zonetoll_flowagent_program_runs_total":              "counter",
	"zonetoll_flowagent_tc_interfaces":                   "gauge",
	"zonetoll_flowagent_tc_attach_errors_total":          "counter",
	"zonetoll_flowagent_tc_event_overruns_total":         "counter",

	"zonetoll_traffic_bytes_total":                      "counter",
	"zonetoll_traffic_packets_total":                    "counter",
	"zonetoll_zone_traffic_bytes_total":                 "counter",
	"zonetoll_zone_traffic_packets_total":               "counter",
	"pod_cross_zone_network_traffic_bytes_total":        "counter",
	"zonetoll_zone_info":                                "gauge",
	"zonetoll_flowserver_reports_total":                 "counter",
	"zonetoll_flowserver_report_apply_duration_seconds": "histogram",
	"zonetoll_flowserver_flows_total":                   "counter",
	"zonetoll_flowserver_traffic_bytes_total":           "counter",
	"zonetoll_flowserver_cross_zone_bytes_total":        "counter",
	"zonetoll_flowserver_addresses_resolved_total":      "counter",
	"zonetoll_flowserver_unresolved_bytes_total":        "counter",
	"zonetoll_flowserver_foreign_zone_reports_total":    "counter",
	"zonetoll_flowserver_unknown_node_reports_total":    "counter",
	"zonetoll_flowserver_foreign_source_bytes_total":    "counter",
	"zonetoll_flowserver_token_reviews_total":           "counter",
	"zonetoll_flowserver_token_cache_lookups_total":     "counter",
	"zonetoll_flowserver_pods":                          "gauge",
	"zonetoll_flowserver_nodes":                         "gauge",
	"zonetoll_flowserver_gone_pod_addresses":            "gauge",
	"zonetoll_flowserver_dedupe_keys":                   "gauge",
	"zonetoll_flowserver_dedupe_evicted_total":          "counter",
	"zonetoll_flowserver_dedupe_saves_total":            "counter",
	"zonetoll_flowserver_dedupe_saved_bytes":            "gauge",
	"zonetoll_flowserver_flow_log_lines_total":          "counter",
	"zonetoll_flowserver_series":                        "gauge",
	"zonetoll_flowserver_series_expired_total":          "counter",
	"zonetoll_flowserver_series_overflow_bytes_total":   "counter",

	"zonetoll_cross_zone_cost_dollars_total":    "counter",
	"zonetoll_price_dollars_per_byte":           "gauge",
	"zonetoll_price_dollars_per_unit":           "gauge",
	"zonetoll_costcalc_traffic_bytes_total":     "counter",
	"zonetoll_costcalc_unpriced_bytes_total":    "counter",
	"zonetoll_costcalc_scrapes_total":           "counter",
	"zonetoll_costcalc_scrape_duration_seconds": "histogram",
	"zonetoll_costcalc_counter_resets_total":    "counter",
	"zonetoll_costcalc_target_traffic_series":   "gauge",

	// Issue #18: the flowserver's per-Service metrics (costcalc reads them) and costcalc's per-Service cost.
	"zonetoll_service_traffic_bytes_total":           "counter",
	"zonetoll_service_ready_endpoints":               "gauge",
	"zonetoll_service_hinted_endpoints":              "gauge",
	"zonetoll_service_info":                          "gauge",
	"zonetoll_kubernetes_info":                       "gauge",
	"zonetoll_service_cross_zone_cost_dollars_total": "counter",
	"zonetoll_service_avoidable_cost_dollars_total":  "counter",
	"zonetoll_costcalc_cost_series":                  "gauge",
	"zonetoll_costcalc_series_expired_total":         "counter",
}

// IsExposed reports whether a series name belongs to an exposed family (a histogram's _bucket, _sum
// and _count included).
func IsExposed(name string) bool {
	if _, ok := Exposed[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && Exposed[base] == "histogram" {
			return true
		}
	}
	return false
}

// MetricNames parses a PromQL expression and returns the metric names its selectors use, sorted. A
// selector without an exact __name__ (a regex over names, say) is an error: it cannot be checked.
func MetricNames(expr string) ([]string, error) {
	e, err := parser.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parsing %q: %w", expr, err)
	}
	var names []string
	var walkErr error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == labels.MetricName {
				if m.Type != labels.MatchEqual {
					walkErr = fmt.Errorf("selector %s matches metric names by %s: name them exactly", vs, m.Type)
				}
				name = m.Value
			}
		}
		names = append(names, name)
		return nil
	})
	if walkErr != nil {
		return nil, walkErr
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// grafanaVars are the Grafana variables dashboard queries may use, with a value of the same type for
// parsing. Any other $variable is an error (the dashboards define no query variables).
var grafanaVars = map[string]string{
	"__rate_interval": "5m",
	"__interval":      "1m",
	"__range":         "1d",
}

var varRE = regexp.MustCompile(`\$\{?(\w+)\}?`)

// ExpandGrafana replaces Grafana's interval variables by durations so the query parses as PromQL.
// "$1" and the like (label_replace replacements inside strings) are left alone.
func ExpandGrafana(expr string) (string, error) {
	var bad []string
	out := varRE.ReplaceAllStringFunc(expr, func(m string) string {
		name := varRE.FindStringSubmatch(m)[1]
		if v, ok := grafanaVars[name]; ok {
			return v
		}
		if strings.Trim(name, "0123456789") == "" {
			return m
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("query %q uses Grafana variables %v that no dashboard defines", expr, bad)
	}
	return out, nil
}

// Dashboard is what the checks read from a Grafana dashboard.
type Dashboard struct {
	UID     string
	Title   string
	Queries []string // every target's expr, nested rows included
}

// ParseDashboard decodes a dashboard's JSON (strictly: valid JSON with a uid, a title and panels).
func ParseDashboard(data []byte) (Dashboard, error) {
	var raw struct {
		UID    string            `json:"uid"`
		Title  string            `json:"title"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return Dashboard{}, fmt.Errorf("decoding dashboard JSON: %w", err)
	}
	if raw.UID == "" || raw.Title == "" || len(raw.Panels) == 0 {
		return Dashboard{}, fmt.Errorf("dashboard %q needs a uid, a title and panels", raw.Title)
	}
	d := Dashboard{UID: raw.UID, Title: raw.Title}
	var walk func([]json.RawMessage) error
	walk = func(panels []json.RawMessage) error {
		for _, p := range panels {
			var panel struct {
				Title   string            `json:"title"`
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			if err := json.Unmarshal(p, &panel); err != nil {
				return fmt.Errorf("decoding a panel of %q: %w", raw.Title, err)
			}
			for _, t := range panel.Targets {
				if strings.TrimSpace(t.Expr) == "" {
					return fmt.Errorf("panel %q of %q has a target without expr", panel.Title, raw.Title)
				}
				d.Queries = append(d.Queries, t.Expr)
			}
			if err := walk(panel.Panels); err != nil {
				return err
			}
		}
		return nil
	}
	return d, walk(raw.Panels)
}
