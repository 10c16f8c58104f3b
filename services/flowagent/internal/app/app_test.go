package app

import (
	"strings"
	"testing"

	"github.com/zonetoll/zonetoll/shared/config"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
)

func TestRunHelpListsSettings(t *testing.T) {
	servicetest.HelpLists(t, Spec(), "ZONETOLL_NODE_NAME", "ZONETOLL_SERVER_URL", "ZONETOLL_SPOOL_BYTES",
		"ZONETOLL_BPF_PIN_DIR", "ZONETOLL_NETNS", "ZONETOLL_KUBE_QPS", "ZONETOLL_LOG_LEVEL")
}

func TestSettingsRejected(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "missing required setting ZONETOLL_NODE_NAME"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_INTERVAL": "0s"}, "invalid setting ZONETOLL_INTERVAL"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_REPORT_MAX_FLOWS": "0"}, "invalid setting ZONETOLL_REPORT_MAX_FLOWS"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_SPOOL_BYTES": "1000"}, "invalid setting ZONETOLL_SPOOL_BYTES"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_SERVER_URL": "flowserver:8080"}, "invalid setting ZONETOLL_SERVER_URL"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_BPF_MODE": "xdp"}, "invalid setting ZONETOLL_BPF_MODE"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_BPF_PRIORITY": "100"}, "invalid setting ZONETOLL_BPF_PRIORITY"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_BPF_TC_UPLINK_PATTERNS": "eth["}, "invalid setting ZONETOLL_BPF_TC_UPLINK_PATTERNS"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_RETRY_MAX_BACKOFF": "10ms"}, "invalid setting ZONETOLL_RETRY_MAX_BACKOFF"},
		{map[string]string{"ZONETOLL_NODE_NAME": "n", "ZONETOLL_SHUTDOWN_FLUSH": "30s"}, "invalid setting ZONETOLL_SHUTDOWN_FLUSH"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, out := servicetest.Run(Spec(), "run")
			if code != servicecmd.ExitUsage {
				t.Errorf("exit code %d, want %d; output:\n%s", code, servicecmd.ExitUsage, out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestDefaultsValid(t *testing.T) {
	t.Setenv("ZONETOLL_NODE_NAME", "node-a")
	var cfg Config
	if _, err := config.Load(&cfg); err != nil {
		t.Fatalf("defaults: %v", err)
	}
}

func TestServerURL(t *testing.T) {
	tests := []struct {
		tmpl, zone, want string
		ok               bool
	}{
		{"http://flowserver-{zone}.zonetoll:8080", "eu-west-1a", "http://flowserver-eu-west-1a.zonetoll:8080", true},
		{"https://flows.example/{zone}/", "b", "https://flows.example/b/", true},
		{"http://127.0.0.1:9000", "a", "http://127.0.0.1:9000", true},
		{"ftp://x", "a", "", false},
		{"{zone}", "a", "", false},
	}
	for _, tt := range tests {
		got, err := serverURL(tt.tmpl, tt.zone)
		if (err == nil) != tt.ok || got != tt.want && tt.ok {
			t.Errorf("serverURL(%q, %q) = %q, %v; want %q ok=%v", tt.tmpl, tt.zone, got, err, tt.want, tt.ok)
		}
	}
}
