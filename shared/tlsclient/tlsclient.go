// Package tlsclient is the HTTP client side of zonetoll's TLS: a transport that trusts exactly the CA
// bundle in a file and re-reads the file when it changes, so a CA rotated by cert-manager (a Secret's
// ca.crt) or trust-manager (a Bundle's ConfigMap) is trusted without a restart.
//
// Why a new transport per bundle rather than a custom VerifyPeerCertificate: each bundle gets Go's own
// verification (chain, host name, key usage, expiry) unchanged, and swapping the transport drops the idle
// connections verified under the old bundle, so the next request makes a fresh handshake.
package tlsclient

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/zonetoll/zonetoll/shared/fileversion"
)

// Transport is an http.RoundTripper for servers whose certificates chain to the CAs of one PEM file.
type Transport struct {
	file    string
	setting string // the setting that named the file, for messages
	log     *slog.Logger

	mu      sync.Mutex
	cur     *http.Transport
	loaded  os.FileInfo // the file as it was when cur was built
	refused os.FileInfo // the last version that failed to load, so it is logged once
}

// New returns a transport that trusts only the certificates in caFile (PEM, one or more), named by
// setting in errors and logs. With an empty caFile it returns a plain transport (the system roots).
// A missing or certificate-less file at start is an error; later, a file that cannot be read or holds no
// certificate is logged and the last good bundle stays in use.
func New(caFile, setting string, log *slog.Logger) (http.RoundTripper, error) {
	if caFile == "" {
		return http.DefaultTransport.(*http.Transport).Clone(), nil
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Transport{file: caFile, setting: setting, log: log}
	st, err := os.Stat(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle (%s): %w", setting, err)
	}
	cur, err := t.build()
	if err != nil {
		return nil, err
	}
	t.cur, t.loaded = cur, st
	return t, nil
}

// build reads the file and makes a transport that trusts its certificates only.
func (t *Transport) build() (*http.Transport, error) {
	pem, err := os.ReadFile(t.file)
	if err != nil {
		return nil, fmt.Errorf("reading CA bundle (%s): %w", t.setting, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", t.setting, t.file)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr, nil
}

// current returns the transport for the file as it is now, rebuilding it when the file changed. One stat
// per request: requests here are one report or one scrape every few seconds.
func (t *Transport) current() *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, err := os.Stat(t.file)
	if err != nil || !fileversion.Changed(t.loaded, st) || (t.refused != nil && !fileversion.Changed(t.refused, st)) {
		// A file missing for a moment (being replaced) keeps the last good bundle; its absence shows
		// as failed handshakes only if the old CA no longer signs the server.
		return t.cur
	}
	tr, err := t.build()
	if err != nil {
		t.refused = st
		t.log.Error("reloading CA bundle; still trusting the previous one", "setting", t.setting, "file", t.file, "error", err)
		return t.cur
	}
	old := t.cur
	t.cur, t.loaded, t.refused = tr, st, nil
	old.CloseIdleConnections()
	t.log.Info("reloaded CA bundle", "setting", t.setting, "file", t.file, "modified", st.ModTime().UTC().Format(time.RFC3339))
	return tr
}

// RoundTrip sends req with the transport of the current bundle.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.current().RoundTrip(req)
}

// CloseIdleConnections closes the idle connections of the current transport (http.Client calls it).
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	cur := t.cur
	t.mu.Unlock()
	cur.CloseIdleConnections()
}
