package httpserver

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/shared/logging"
	"github.com/zonetoll/zonetoll/testkit/tlstest"
)

// writeCert writes a server certificate for 127.0.0.1 signed by a new CA named cn, as tls.crt and
// tls.key in dir, and returns the pool of that CA.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	ca := tlstest.NewCA(t, cn)
	certPEM, keyPEM := ca.ServerPEM(t)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	tlstest.WriteFile(t, certFile, certPEM)
	tlstest.WriteFile(t, keyFile, keyPEM)
	pool = x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return certFile, keyFile, pool
}

func TestTLSServesAndReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	var pool1 *x509.CertPool
	cfg.TLSCertFile, cfg.TLSKeyFile, pool1 = writeCert(t, dir, "first")
	s, _, _ := start(t, cfg, nil)
	url := "https://" + s.Addr().String() + "/healthz"

	peer := func(pool *x509.CertPool) (string, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz over TLS: %d", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0].Issuer.CommonName, nil
	}
	if cn, err := peer(pool1); err != nil || cn != "first" {
		t.Fatalf("TLS with the first certificate: %q, %v", cn, err)
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + s.Addr().String() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
	}
	// A rotated certificate is served after the recheck interval, without a restart.
	time.Sleep(10 * time.Millisecond)
	_, _, pool2 := writeCert(t, dir, "second")
	deadline := time.Now().Add(tlsRecheck + 10*time.Second)
	for {
		cn, err := peer(pool2)
		if err == nil && cn == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rotated certificate not served after %s: %q, %v", tlsRecheck, cn, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestTLSSettingErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCert(t, dir, "x")
	tests := []struct {
		cert, key string
		want      string
	}{
		{certFile, "", "must be set together"},
		{filepath.Join(dir, "missing.crt"), keyFile, "ZONETOLL_HTTP_TLS_CERT_FILE"},
		{keyFile, certFile, "loading TLS key pair"},
	}
	for _, tt := range tests {
		cfg := testConfig()
		cfg.TLSCertFile, cfg.TLSKeyFile = tt.cert, tt.key
		_, err := New(cfg, prometheus.NewRegistry(), logging.Discard())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New with cert %q key %q: %v, want it to mention %q", tt.cert, tt.key, err, tt.want)
		}
	}
}
