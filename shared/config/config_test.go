package config

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

type inner struct {
	ListenAddress string        `split_words:"true" default:":8080" desc:"Address to listen on."`
	ReadTimeout   time.Duration `split_words:"true" default:"5s" desc:"Read timeout."`
}

type testConfig struct {
	HTTP      inner
	Format    string   `default:"json" oneof:"json text" desc:"Output format."`
	Workers   int      `default:"2" desc:"Worker count."`
	Token     string   `required:"true" desc:"Token."`
	Zones     []string `desc:"Zones."`
	Verbose   bool     `desc:"Verbose."`
	MaxFlows  uint32   `split_words:"true" default:"100000" desc:"Flow limit."`
	validated bool
}

func (c *testConfig) Validate() error {
	c.validated = true
	if c.Workers < 1 {
		return Invalid("ZONETOLL_WORKERS", "0", "an integer of at least 1")
	}
	return nil
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string // substring; empty means success
		check   func(t *testing.T, c *testConfig, unknown []string)
	}{
		{
			name: "defaults and required",
			env:  map[string]string{"ZONETOLL_TOKEN": "t"},
			check: func(t *testing.T, c *testConfig, _ []string) {
				if c.HTTP.ListenAddress != ":8080" || c.HTTP.ReadTimeout != 5*time.Second || c.Format != "json" || c.Workers != 2 || c.MaxFlows != 100000 {
					t.Errorf("defaults not applied: %+v", c)
				}
				if !c.validated {
					t.Error("Validate was not called")
				}
			},
		},
		{
			name: "values from the environment",
			env: map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_HTTP_LISTEN_ADDRESS": "127.0.0.1:9", "ZONETOLL_HTTP_READ_TIMEOUT": "1m",
				"ZONETOLL_ZONES": "a,b", "ZONETOLL_VERBOSE": "true", "ZONETOLL_FORMAT": "text"},
			check: func(t *testing.T, c *testConfig, _ []string) {
				if c.HTTP.ListenAddress != "127.0.0.1:9" || c.HTTP.ReadTimeout != time.Minute || len(c.Zones) != 2 || !c.Verbose || c.Format != "text" {
					t.Errorf("environment not applied: %+v", c)
				}
			},
		},
		{
			name: "unknown variables are reported",
			env:  map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_WROKERS": "3"},
			check: func(t *testing.T, _ *testConfig, unknown []string) {
				// The test's own environment may carry other ZONETOLL_ variables (make test sets some).
				if !slices.Contains(unknown, "ZONETOLL_WROKERS") || slices.Contains(unknown, "ZONETOLL_TOKEN") {
					t.Errorf("unknown = %v, want ZONETOLL_WROKERS and not the known ZONETOLL_TOKEN", unknown)
				}
			},
		},
		{name: "missing required", env: map[string]string{}, wantErr: "missing required setting ZONETOLL_TOKEN"},
		{name: "bad duration", env: map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_HTTP_READ_TIMEOUT": "5 seconds"},
			wantErr: `invalid setting ZONETOLL_HTTP_READ_TIMEOUT="5 seconds": expected a duration such as 500ms, 10s or 1m30s`},
		{name: "bad integer", env: map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_WORKERS": "many"},
			wantErr: `invalid setting ZONETOLL_WORKERS="many": expected an integer`},
		{name: "negative unsigned", env: map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_MAX_FLOWS": "-1"},
			wantErr: `invalid setting ZONETOLL_MAX_FLOWS="-1": expected a non-negative integer`},
		{name: "bad bool", env: map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_VERBOSE": "yes please"},
			wantErr: `invalid setting ZONETOLL_VERBOSE="yes please": expected true or false`},
		{name: "not one of", env: map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_FORMAT": "xml"},
			wantErr: `invalid setting ZONETOLL_FORMAT="xml": expected one of json, text`},
		{name: "validate", env: map[string]string{"ZONETOLL_TOKEN": "t", "ZONETOLL_WORKERS": "0"},
			wantErr: `invalid setting ZONETOLL_WORKERS="0": expected an integer of at least 1`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var c testConfig
			unknown, err := Load(&c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load() error = %v, want it to contain %q", err, tt.wantErr)
				}
				var ce *Error
				if !errors.As(err, &ce) {
					t.Errorf("error %v is not a *config.Error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load(): %v", err)
			}
			tt.check(t, &c, unknown)
		})
	}
}

// TestWriters: the help text and the docs/settings page list every setting with its default, its
// accepted values and its description.
func TestWriters(t *testing.T) {
	tests := []struct {
		name     string
		write    func(io.Writer, any) error
		want     []string
		settings int // how many settings the output names, when checked
	}{
		{"usage", WriteUsage, []string{
			"ZONETOLL_HTTP_LISTEN_ADDRESS", ":8080", "Address to listen on.",
			"ZONETOLL_HTTP_READ_TIMEOUT", "5s",
			"ZONETOLL_FORMAT", "one of json, text",
			"ZONETOLL_TOKEN", "(required)",
			"ZONETOLL_MAX_FLOWS", "100000",
			"ZONETOLL_ZONES", "comma-separated list of strings",
		}, 8},
		{"markdown", WriteMarkdown, []string{
			"| `ZONETOLL_HTTP_READ_TIMEOUT` | `5s` | a duration such as 500ms, 10s or 1m30s | Read timeout. |",
			"| `ZONETOLL_TOKEN` | (required) |",
			"| `ZONETOLL_ZONES` | (empty) |",
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.write(&buf, &testConfig{}); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("%s lacks %q:\n%s", tt.name, want, out)
				}
			}
			if n := strings.Count(out, "ZONETOLL_"); tt.settings > 0 && n != tt.settings {
				t.Errorf("%s lists %d settings, want %d:\n%s", tt.name, n, tt.settings, out)
			}
		})
	}
}
