// Package reportpost sends agent reports to a flowserver the way flowagent does (POST /v1/reports,
// the wire format, gzip, a bearer token), for the tests of every module that talks to a real
// flowserver. The agent's own sender (services/flowagent/internal/sender) adds retries and spooling;
// tests want one request and its answer.
package reportpost

import (
	"bytes"
	"io"
	"net/http"

	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/testkit/gate"
)

// Response is the flowserver's answer.
type Response struct {
	Status int
	Body   string
	Header http.Header
}

// Post sends body to baseURL (http://host:port) + /v1/reports with the Content-Encoding encoding and
// the bearer token; an empty encoding or token leaves its header out, so tests can send what an agent
// never would. A failed request fails t.
func Post(t gate.TB, baseURL, token string, body []byte, encoding string) Response {
	t.Helper()
	return PostWith(t, http.DefaultClient, baseURL, token, body, encoding)
}

// PostWith is Post with a client of the test's, e.g. one that trusts an HTTPS server's CA.
func PostWith(t gate.TB, c *http.Client, baseURL, token string, body []byte, encoding string) Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, baseURL+"/v1/reports", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("building a report request to %s: %v", baseURL, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("posting a report to %s: %v", baseURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer to a report from %s: %v", baseURL, err)
	}
	return Response{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
}

// Gzip is r in the wire format, gzipped as the agent sends it.
func Gzip(t gate.TB, r *report.Report) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := report.WriteGzip(&buf, r); err != nil {
		t.Fatalf("encoding a report: %v", err)
	}
	return buf.Bytes()
}

// Send posts r gzipped with token and fails t unless the flowserver accepted it (2xx).
func Send(t gate.TB, baseURL, token string, r *report.Report) {
	t.Helper()
	if resp := Post(t, baseURL, token, Gzip(t, r), "gzip"); resp.Status/100 != 2 {
		t.Fatalf("report from %s seq %d: %d %s", r.Node, r.Sequence, resp.Status, resp.Body)
	}
}
