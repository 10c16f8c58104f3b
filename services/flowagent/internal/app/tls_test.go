package app

import (
	"strings"
	"testing"

	"github.com/zonetoll/zonetoll/shared/config"
)

// TestPlainHTTPRefusedUnlessAllowed: the agent never sends its token over http:// unless
// ZONETOLL_ALLOW_PLAINTEXT says so, and the error names both settings.
func TestPlainHTTPRefusedUnlessAllowed(t *testing.T) {
	for _, tt := range []struct {
		url, allow string
		wantErr    bool
	}{
		{"http://flowserver-{zone}.zonetoll:8080", "", true},
		{"HTTP://127.0.0.1:9000", "", true},
		{"http://flowserver-{zone}.zonetoll:8080", "false", true},
		{"http://127.0.0.1:9000", "true", false},
		{"https://flowserver-{zone}.zonetoll:8080", "", false},
		{"", "", false}, // the default is https
	} {
		t.Run(tt.url+" allow="+tt.allow, func(t *testing.T) {
			t.Setenv("ZONETOLL_NODE_NAME", "node-a")
			if tt.url != "" {
				t.Setenv("ZONETOLL_SERVER_URL", tt.url)
			}
			if tt.allow != "" {
				t.Setenv("ZONETOLL_ALLOW_PLAINTEXT", tt.allow)
			}
			var cfg Config
			_, err := config.Load(&cfg)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("plain http accepted")
			}
			for _, want := range []string{"ZONETOLL_SERVER_URL", "ZONETOLL_ALLOW_PLAINTEXT=true", "ZONETOLL_SERVER_CA_FILE", "clear text"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}
