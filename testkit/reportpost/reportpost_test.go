package reportpost

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/shared/report"
)

// TestPostSendsWhatTheAgentSends checks the request against the server side's own decoder.
func TestPostSendsWhatTheAgentSends(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := &report.Report{Node: "node-a", Sequence: 7, WindowStart: now.Add(-10 * time.Second), WindowEnd: now}
	r.BootID[0] = 1
	var got *report.Report
	var header http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		header = req.Header
		if req.URL.Path != "/v1/reports" || req.Method != http.MethodPost {
			t.Errorf("request %s %s, want POST /v1/reports", req.Method, req.URL.Path)
		}
		var err error
		got, err = report.ReadGzip(req.Body, 1<<20, report.Limits{})
		if err != nil {
			t.Errorf("decoding what Post sent: %v", err)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()

	resp := Post(t, srv.URL, "tok", Gzip(t, r), "gzip")
	if resp.Status != http.StatusAccepted {
		t.Errorf("status %d, want 202", resp.Status)
	}
	if header.Get("Authorization") != "Bearer tok" || header.Get("Content-Encoding") != "gzip" {
		t.Errorf("headers %v: want the bearer token and gzip", header)
	}
	if got == nil || got.Node != "node-a" || got.Sequence != 7 {
		t.Errorf("decoded %+v, want node-a seq 7", got)
	}
	if resp := Post(t, srv.URL, "", Gzip(t, r), "gzip"); resp.Status != http.StatusAccepted || header.Get("Authorization") != "" {
		t.Errorf("an empty token must leave the header out; got %q", header.Get("Authorization"))
	}
}
