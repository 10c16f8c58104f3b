package sender

import (
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/services/flowagent/internal/reporttest"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/spool"
	"github.com/zonetoll/zonetoll/shared/tlsclient"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/tlstest"
)

// TestTLSVerifiesTheServerAndFollowsTheCAFile sends over HTTPS to a flowserver-like server whose
// certificate a CA of the test signs, with the transport the agent builds from ZONETOLL_SERVER_CA_FILE:
// reports land; a certificate of another CA is refused (a network error, the report stays spooled and
// nothing is applied); once the CA file is replaced, as cert-manager's Secret volume replaces ca.crt,
// the same sender delivers without a restart, and the report is applied once.
func TestTLSVerifiesTheServerAndFollowsTheCAFile(t *testing.T) {
	ca1, ca2 := tlstest.NewCA(t, "zonetoll-ca one"), tlstest.NewCA(t, "zonetoll-ca two")
	fs := &fakeServer{applied: map[reportID]uint64{}, rejectSeq: map[uint64]bool{}}
	srv := tlstest.NewServer(t, fs, ca1.Server(t))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	tlstest.WriteFile(t, caFile, ca1.PEM())
	var logs servicetest.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	tr, err := tlsclient.New(caFile, "ZONETOLL_SERVER_CA_FILE", log)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	s, err := New(Config{URL: srv.URL, SpoolBytes: 1 << 20, MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond,
		Timeout: 10 * time.Second, Client: &http.Client{Transport: tr}}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	runSender(t, s)

	if err := s.Enqueue(reporttest.Report(1, 100)); err != nil {
		t.Fatal(err)
	}
	waitApplied(t, fs, 1)
	waitDelivered(t, s, 1)

	// The server now shows a certificate the agent's CA did not sign.
	srv.SetCertificate(ca2.Server(t))
	if err := s.Enqueue(reporttest.Report(2, 200)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for testutil.ToFloat64(s.m.sent.WithLabelValues(resultNetworkError)) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no refused handshakes counted; logs:\n%s", logs.String())
		}
		time.Sleep(time.Millisecond)
	}
	if applied, _, _, _, _ := fs.snapshot(); len(applied) != 1 {
		t.Fatalf("server applied %d reports through a certificate of another CA, want 1", len(applied))
	}
	if n := s.Pending(); n != 1 {
		t.Errorf("%d reports spooled while the server is not trusted, want 1 (kept for retry)", n)
	}
	if !strings.Contains(logs.String(), "certificate signed by unknown authority") {
		t.Errorf("the refused certificate is not logged:\n%s", logs.String())
	}

	// The CA is rotated: the file now holds the new CA (renamed over the old, as a Secret volume does).
	tlstest.WriteFile(t, caFile, ca2.PEM())
	waitApplied(t, fs, 2)
	waitDelivered(t, s, 2)
	applied, order, _, _, bad := fs.snapshot()
	if len(bad) > 0 || len(order) != 2 || applied[reportID{"node-a", reporttest.Boot, 2}] != 200 {
		t.Errorf("applied %v in order %v (bad %v), want reports 1 and 2 once each", applied, order, bad)
	}
	if got := droppedBytes(t, reg, spool.ReasonRejected) + droppedBytes(t, reg, spool.ReasonSpoolFull); got != 0 {
		t.Errorf("dropped %v bytes, want none", got)
	}
	if !strings.Contains(logs.String(), `msg="reloaded CA bundle" setting=ZONETOLL_SERVER_CA_FILE`) {
		t.Errorf("the reload is not logged:\n%s", logs.String())
	}
}
