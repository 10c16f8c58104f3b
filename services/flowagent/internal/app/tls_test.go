package app

import (
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHTTPClientTrustsOnlyTheGivenCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer srv.Close()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := httpClient(ca, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("with the server's CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d", resp.StatusCode)
	}
	// Without it, the test server's self-signed certificate is refused.
	plain, _ := httpClient("", 5*time.Second)
	if _, err := plain.Get(srv.URL); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("system roots accepted a self-signed certificate: %v", err)
	}
	junk := filepath.Join(dir, "junk.pem")
	_ = os.WriteFile(junk, []byte("not a certificate"), 0o600)
	for path, want := range map[string]string{junk: "no PEM certificate", filepath.Join(dir, "missing"): "ZONETOLL_SERVER_CA_FILE"} {
		if _, err := httpClient(path, time.Second); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("httpClient(%s) error %v, want it to mention %q", path, err, want)
		}
	}
}
