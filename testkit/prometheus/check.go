package prometheus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/yaml"
)

// CheckConfig runs `promtool check config` on files, which parses them with
// Prometheus' own config package (every field, every relabel regex) and checks
// that files they reference exist.
func CheckConfig(ctx context.Context, promtool string, files ...string) error {
	args := append([]string{"check", "config"}, files...)
	out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("promtool check config %s: %w\n%s", strings.Join(files, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// Target is one target as `promtool check service-discovery` reports it.
type Target struct {
	// DiscoveredLabels are the labels before relabelling (__meta_* and all).
	DiscoveredLabels map[string]string `json:"discoveredLabels"`
	// Labels are the labels after relabelling; empty when a rule dropped the
	// target.
	Labels map[string]string `json:"labels"`
	// Error is set when the relabelled labels were invalid. promtool encodes
	// the Go error value, so only its presence is meaningful.
	Error json.RawMessage `json:"error,omitempty"`
}

// Dropped says whether relabelling dropped the target.
func (t Target) Dropped() bool { return len(t.Labels) == 0 }

// DiscoverTargets runs `promtool check service-discovery` for one job of the
// config file: the job's real service discovery plus its relabelling, without
// scraping anything. promtool collects what discovery sends until wait has
// passed, so wait must cover the first full listing.
func DiscoverTargets(ctx context.Context, promtool, configFile, job string, wait time.Duration) ([]Target, error) {
	cmd := exec.CommandContext(ctx, promtool, "check", "service-discovery", "--timeout="+wait.String(), configFile, job)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("promtool check service-discovery %s %s: %w\n%s", configFile, job, err, tail(stderr.String(), 20))
	}
	var targets []Target
	if err := json.Unmarshal(stdout.Bytes(), &targets); err != nil {
		return nil, fmt.Errorf("decoding promtool service-discovery output: %w\n%s", err, tail(stdout.String(), 20))
	}
	return targets, nil
}

// envPlaceholder is vmagent's syntax for environment variables in
// -promscrape.config.
var envPlaceholder = regexp.MustCompile(`%\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// ExpandVMAgentEnv replaces vmagent's %{NAME} placeholders from env, as
// vmagent does when it loads -promscrape.config. A placeholder without a
// value is an error here, so a test cannot silently check an unexpanded
// file; vmagent itself (v1.151.0, lib/envtemplate) leaves such a placeholder
// as it is and loads the file.
func ExpandVMAgentEnv(data []byte, env map[string]string) ([]byte, error) {
	var missing []string
	out := envPlaceholder.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(envPlaceholder.FindSubmatch(m)[1])
		v, ok := env[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return []byte(v)
	})
	if len(missing) > 0 {
		return nil, fmt.Errorf("expanding vmagent placeholders: no value for %s", strings.Join(missing, ", "))
	}
	return out, nil
}

// VMAgentAsPrometheus turns a vmagent -promscrape.config (placeholders already
// expanded) into the Prometheus configuration that discovers and relabels the
// same targets: vmagent's global.relabel_configs, which apply to every job,
// are put in front of each job's own relabel_configs. The result is JSON,
// which Prometheus reads as YAML.
//
// Only global.relabel_configs is translated. Any other vmagent-only field
// stays and makes Prometheus reject the result, which is what a check wants.
func VMAgentAsPrometheus(data []byte) ([]byte, error) {
	js, err := yaml.ToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("parsing vmagent config: %w", err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(js, &cfg); err != nil {
		return nil, fmt.Errorf("parsing vmagent config: %w", err)
	}
	var global []any
	if g, ok := cfg["global"].(map[string]any); ok {
		if rc, ok := g["relabel_configs"]; ok {
			if global, ok = rc.([]any); !ok {
				return nil, errors.New("vmagent config: global.relabel_configs is not a list")
			}
			delete(g, "relabel_configs")
		}
	}
	jobs, ok := cfg["scrape_configs"].([]any)
	if !ok || len(jobs) == 0 {
		return nil, errors.New("vmagent config: no scrape_configs")
	}
	for i, j := range jobs {
		job, ok := j.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("vmagent config: scrape_configs[%d] is not a mapping", i)
		}
		own, _ := job["relabel_configs"].([]any)
		if job["relabel_configs"] != nil && own == nil {
			return nil, fmt.Errorf("vmagent config: scrape_configs[%d].relabel_configs is not a list", i)
		}
		rules := append(append([]any{}, global...), own...)
		if len(rules) > 0 {
			job["relabel_configs"] = rules
		}
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding Prometheus config: %w", err)
	}
	return append(out, '\n'), nil
}
