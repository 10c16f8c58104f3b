// Package promtest runs a real Prometheus (Debian's /usr/bin/prometheus) on loopback for tests, with a
// static scrape configuration and its own data dir, and ends it by PID when the test ends. It is
// imported only by tests.
package promtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
)

// Binary is where Debian's prometheus package puts the server (hack/setup.sh installs it on CI).
const Binary = "/usr/bin/prometheus"

// Prometheus is a running server.
type Prometheus struct {
	URL string // http://127.0.0.1:port
	Dir string
	API v1.API // its HTTP API
}

// Value is the value of an instant query now, and false unless the query answered exactly one sample
// (not yet scraped, or an error): the tests poll it until it is what they wait for.
func (p *Prometheus) Value(q string) (float64, bool) {
	v, _, err := p.API.Query(context.Background(), q, time.Now())
	vec, ok := v.(model.Vector)
	if err != nil || !ok || len(vec) != 1 {
		return 0, false
	}
	return float64(vec[0].Value), true
}

// Start runs Prometheus scraping targets (host:port, path /metrics) every interval and returns once it
// is ready. Without the binary the gate decides (fail under make test, skip elsewhere).
func Start(t testing.TB, interval time.Duration, targets ...string) *Prometheus {
	t.Helper()
	_, err := os.Stat(Binary)
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
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := start(t, dir, cfgPath)
		if err == nil {
			return p
		}
		lastErr = err // most likely another process took the free port in between
	}
	t.Fatalf("starting prometheus: %v", lastErr)
	return nil
}

func start(t testing.TB, dir, cfgPath string) (*Prometheus, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	data, err := os.MkdirTemp(dir, "data-")
	if err != nil {
		return nil, err
	}
	log := &servicetest.SyncBuffer{}
	cmd := exec.Command(Binary, "--config.file="+cfgPath, "--storage.tsdb.path="+data, "--web.listen-address="+addr,
		"--storage.tsdb.retention.time=1d", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, and SIGKILL if the test binary dies, so no Prometheus outlives the run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", Binary, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		select {
		case <-exited:
			return
		default:
		}
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	url := "http://" + addr
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("prometheus exited at start: %s", log.String())
		case <-ctx.Done():
			stop()
			return nil, fmt.Errorf("prometheus not ready within 60s: %s", log.String())
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	client, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		stop()
		return nil, fmt.Errorf("making a client of prometheus at %s: %w", url, err)
	}
	return &Prometheus{URL: url, Dir: dir, API: v1.NewAPI(client)}, nil
}
