package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantDebug bool
		wantJSON  bool
		wantErr   string
	}{
		{name: "json info", cfg: Config{Level: "info", Format: "json"}, wantJSON: true},
		{name: "text debug", cfg: Config{Level: "DEBUG", Format: "text"}, wantDebug: true},
		{name: "warn alias", cfg: Config{Level: "warning", Format: "json"}, wantJSON: true},
		{name: "bad level", cfg: Config{Level: "verbose", Format: "json"}, wantErr: `unknown log level "verbose"`},
		{name: "bad format", cfg: Config{Level: "info", Format: "xml"}, wantErr: `unknown log format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tt.cfg, "zonelabeler")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New() error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(): %v", err)
			}
			log.Debug("debug line")
			log.Warn("warn line", "pod", "a/b")
			out := buf.String()
			if got := strings.Contains(out, "debug line"); got != tt.wantDebug {
				t.Errorf("debug line written = %v, want %v; output:\n%s", got, tt.wantDebug, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			last := lines[len(lines)-1]
			if tt.wantJSON {
				var m map[string]any
				if err := json.Unmarshal([]byte(last), &m); err != nil {
					t.Fatalf("line is not JSON: %q: %v", last, err)
				}
				if m["service"] != "zonelabeler" || m["pod"] != "a/b" || m["msg"] != "warn line" {
					t.Errorf("JSON line = %v, want service, pod and msg fields", m)
				}
			} else if !strings.Contains(last, "service=zonelabeler") {
				t.Errorf("text line %q lacks service=zonelabeler", last)
			}
		})
	}
}
