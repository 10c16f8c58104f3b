package tlsclient

import (
	"bytes"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zonetoll/zonetoll/testkit/tlstest"
)

func get(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return errors.New(resp.Status)
	}
	return nil
}

func unknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua)
}

// TestReloadsTheBundleWithoutARestart is the rotation a cluster does: the server's certificate is
// renewed by a new CA, the bundle file is replaced (a Secret volume renames), and the same client trusts
// the new server at its next request.
func TestReloadsTheBundleWithoutARestart(t *testing.T) {
	ca1, ca2 := tlstest.NewCA(t, "ca one"), tlstest.NewCA(t, "ca two")
	srv := tlstest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), ca1.Server(t))
	file := filepath.Join(t.TempDir(), "ca.crt")
	tlstest.WriteFile(t, file, ca1.PEM())
	var logs bytes.Buffer
	tr, err := New(file, "ZONETOLL_TEST_CA_FILE", slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: tr}
	if err := get(c, srv.URL); err != nil {
		t.Fatalf("server signed by the bundle's CA: %v", err)
	}

	srv.SetCertificate(ca2.Server(t))
	if err := get(c, srv.URL); !unknownAuthority(err) {
		t.Fatalf("server signed by another CA: %v, want an unknown authority", err)
	}
	tlstest.WriteFile(t, file, ca2.PEM())
	if err := get(c, srv.URL); err != nil {
		t.Fatalf("after the bundle was replaced by the new CA: %v", err)
	}
	if !strings.Contains(logs.String(), `msg="reloaded CA bundle" setting=ZONETOLL_TEST_CA_FILE`) {
		t.Errorf("no reload logged: %s", logs.String())
	}

	// A bundle of both CAs (trust-manager's way through a rotation) trusts either server.
	tlstest.WriteFile(t, file, append(ca1.PEM(), ca2.PEM()...))
	srv.SetCertificate(ca1.Server(t))
	if err := get(c, srv.URL); err != nil {
		t.Fatalf("bundle of both CAs, server of the first: %v", err)
	}

	// A broken file keeps the last good bundle, and says so once.
	tlstest.WriteFile(t, file, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"))
	for range 3 {
		if err := get(c, srv.URL); err != nil {
			t.Fatalf("after a broken bundle: %v, want the previous bundle still trusted", err)
		}
	}
	if n := strings.Count(logs.String(), "still trusting the previous one"); n != 1 {
		t.Errorf("broken bundle logged %d times, want once: %s", n, logs.String())
	}
}

func TestEmptyFileMeansSystemRootsAndBadFilesFailAtStart(t *testing.T) {
	ca := tlstest.NewCA(t, "private")
	srv := tlstest.NewServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }), ca.Server(t))
	tr, err := New("", "ZONETOLL_TEST_CA_FILE", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := get(&http.Client{Transport: tr}, srv.URL); !unknownAuthority(err) {
		t.Errorf("system roots and a private CA: %v, want an unknown authority", err)
	}
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	tlstest.WriteFile(t, junk, []byte("not a certificate"))
	for path, want := range map[string]string{
		junk:                          "ZONETOLL_TEST_CA_FILE " + junk + ": no PEM certificate in it",
		filepath.Join(dir, "missing"): "reading CA bundle (ZONETOLL_TEST_CA_FILE)",
	} {
		if _, err := New(path, "ZONETOLL_TEST_CA_FILE", nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%s): %v, want an error containing %q", path, err, want)
		}
	}
}
