package prometheus

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/testkit/freeport"
	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/process"
)

// DebianBinary is where Debian's prometheus package puts the server (hack/setup.sh installs it on CI).
// It lacks Kubernetes discovery, which a static scrape configuration does not need.
const DebianBinary = "/usr/bin/prometheus"

// Server is a Prometheus run for a test.
type Server struct {
	URL string // http://127.0.0.1:port
	Dir string // its configuration and data
	API v1.API // its HTTP API
}

// Value is the value of an instant query now, and false unless the query answered exactly one sample
// (not scraped yet, or an error): tests poll it until it is what they wait for.
func (s *Server) Value(q string) (float64, bool) {
	v, _, err := s.API.Query(context.Background(), q, time.Now())
	vec, ok := v.(model.Vector)
	if err != nil || !ok || len(vec) != 1 {
		return 0, false
	}
	return float64(vec[0].Value), true
}

// StartScraping runs Debian's Prometheus on loopback, scraping targets (host:port, path /metrics) every
// interval, until the test ends, and returns once it is ready. Without the binary the gate decides (fail
// under make test, skip elsewhere).
func StartScraping(t gate.TB, interval time.Duration, targets ...string) *Server {
	t.Helper()
	_, err := os.Stat(DebianBinary)
	gate.Need(t, "Debian's prometheus", err, gate.Debian("prometheus"))
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
scrape_configs:
  - job_name: flowserver
    static_configs:
      - targets: [%s]
`, interval, interval, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := Start(ctx, t, DebianBinary, cfgPath)
	client, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		t.Fatalf("making a client of prometheus at %s: %v", url, err)
	}
	return &Server{URL: url, Dir: dir, API: v1.NewAPI(client)}
}

// Start runs the prometheus binary bin with the configuration file config on a free loopback port until
// the test ends and returns its base URL once it is ready. A start that fails (most likely another
// process took the port in between) is tried again on another port, three times in all.
func Start(ctx context.Context, t gate.TB, bin, config string) string {
	t.Helper()
	var lastErr error
	for range 3 {
		addr, err := freeport.Addr()
		if err != nil {
			t.Fatal(err)
		}
		data, err := os.MkdirTemp(filepath.Dir(config), "data-")
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--config.file="+config, "--storage.tsdb.path="+data,
			"--web.listen-address="+addr, "--storage.tsdb.retention.time=1d", "--log.level=warn")
		url := "http://" + addr
		if lastErr = process.StartReady(ctx, t, "prometheus "+config, cmd, url+"/-/ready"); lastErr == nil {
			return url
		}
	}
	t.Fatalf("starting %s: %v", bin, lastErr)
	return ""
}
