package httpserver

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/shared/buildinfo"
	"github.com/zonetoll/zonetoll/shared/logging"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

func testConfig() Config {
	return Config{
		ListenAddress:      "127.0.0.1:0",
		ReadHeaderTimeout:  time.Second,
		ReadTimeout:        5 * time.Second,
		WriteTimeout:       5 * time.Second,
		IdleTimeout:        5 * time.Second,
		MaxHeaderBytes:     4096,
		ShutdownTimeout:    5 * time.Second,
		MetricsMaxInFlight: 1,
		CheckTimeout:       time.Second,
	}
}

// start runs a server with cfg until the test ends and returns it with its base URL.
func start(t *testing.T, cfg Config, setup func(*Server, *prometheus.Registry)) (*Server, string, func() error) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildinfo.Get("testsvc").Collector())
	s, err := New(cfg, reg, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(s, reg)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("Serve did not return 30s after cancel")
		}
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = stop()
		}
	})
	return s, "http://" + s.Addr().String(), func() error { stopped = true; return stop() }
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// do sends req and returns the status code and body of the response.
func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestMetricsScrapeParses(t *testing.T) {
	_, base, _ := start(t, testConfig(), nil)
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	fams := metricstest.Scrape(t, base+"/metrics")
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "zonetoll_build_info",
		"zonetoll_http_requests_total", "zonetoll_http_request_duration_seconds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("scrape lacks %s; has %v", name, fams.Names())
		}
	}
	if v, ok := fams.Value("zonetoll_build_info", map[string]string{"service": "testsvc"}); !ok || v != 1 {
		t.Errorf("zonetoll_build_info{service=testsvc} = %v, %v; want 1", v, ok)
	}
	if v, _ := fams.Value("zonetoll_http_requests_total", map[string]string{"handler": "/healthz", "code": "200", "method": "get"}); v != 1 {
		t.Errorf("requests_total for /healthz = %v, want 1", v)
	}
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	if _, err := New(testConfig(), prometheus.NewRegistry(), logging.Discard()); err != nil {
		t.Fatal(err)
	}
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) > 0 {
		t.Errorf("metric lint: %v %v", problems, err)
	}
}

func TestReadyzFlipsWithCheck(t *testing.T) {
	var failing error = errors.New("pod cache not synced")
	_, base, _ := start(t, testConfig(), func(s *Server, _ *prometheus.Registry) {
		s.AddReadinessCheck("informers", func(context.Context) error { return failing })
		s.AddReadinessCheck("config", func(context.Context) error { return nil })
	})
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]informers failed: pod cache not synced") || !strings.Contains(body, "[+]config ok") {
		t.Fatalf("/readyz with failing check = %d %q", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d while only readiness fails, want 200", code)
	}
	failing = nil
	if code, body := get(t, base+"/readyz"); code != http.StatusOK || !strings.Contains(body, "[+]informers ok") {
		t.Fatalf("/readyz after check passes = %d %q", code, body)
	}
}

func TestHealthzFailsWithLivenessCheck(t *testing.T) {
	_, base, _ := start(t, testConfig(), func(s *Server, _ *prometheus.Registry) {
		s.AddHealthCheck("drain-loop", func(context.Context) error { return errors.New("no drain for 5m") })
	})
	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]drain-loop failed: no drain for 5m") {
		t.Fatalf("/healthz = %d %q", code, body)
	}
}

func TestShutdownDrainsInFlightRequest(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s, base, stop := start(t, testConfig(), func(s *Server, _ *prometheus.Registry) {
		s.Handle("POST /slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			_, _ = io.WriteString(w, "applied")
		}))
	})
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Post(base+"/slow", "text/plain", nil)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{code: resp.StatusCode, body: string(b), err: err}
	}()
	<-entered
	stopErr := make(chan error, 1)
	go func() { stopErr <- stop() }()
	// Serve must wait for the request: readiness goes down first, the in-flight request finishes.
	deadline := time.Now().Add(5 * time.Second)
	for !s.stopping.Load() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !s.stopping.Load() {
		t.Fatal("server did not start shutting down")
	}
	select {
	case err := <-stopErr:
		t.Fatalf("Serve returned (%v) while a request was still in flight", err)
	default:
	}
	close(release)
	r := <-res
	if r.err != nil || r.code != http.StatusOK || r.body != "applied" {
		t.Fatalf("in-flight request = %d %q %v, want 200 applied", r.code, r.body, r.err)
	}
	if err := <-stopErr; err != nil {
		t.Fatalf("Serve after graceful shutdown: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still accepts connections after shutdown")
	}
}

func TestShutdownDeadline(t *testing.T) {
	cfg := testConfig()
	cfg.ShutdownTimeout = 200 * time.Millisecond
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	_, base, stop := start(t, cfg, func(s *Server, _ *prometheus.Registry) {
		s.Handle("GET /stuck", http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			close(entered)
			<-release
		}))
	})
	go func() {
		if resp, err := http.Get(base + "/stuck"); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	err := stop()
	if err == nil || !strings.Contains(err.Error(), "requests still running after 200ms") {
		t.Fatalf("Serve() = %v, want an error naming the shutdown deadline", err)
	}
}

func TestLimits(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	_, base, _ := start(t, testConfig(), func(_ *Server, reg *prometheus.Registry) {
		reg.MustRegister(blockingCollector{entered: entered, release: release})
	})
	addr := strings.TrimPrefix(base, "http://")

	t.Run("header too large gets 431", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("a", 8192))
		if code, _ := do(t, req); code != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status = %d, want 431", code)
		}
	})
	t.Run("wrong method gets 405", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, base+"/metrics", strings.NewReader("x"))
		if code, _ := do(t, req); code != http.StatusMethodNotAllowed {
			t.Errorf("status = %d, want 405", code)
		}
	})
	t.Run("slow headers are cut off", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil {
			t.Fatal(err)
		}
		// Never finish the headers: the server must close the connection after ReadHeaderTimeout (1s).
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, err = bufio.NewReader(conn).ReadByte()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("server kept a connection with unfinished headers open for 20s")
		}
	})
	t.Run("concurrent scrapes over the limit get 503", func(t *testing.T) {
		first := make(chan int, 1)
		go func() {
			code, _ := get(t, base+"/metrics")
			first <- code
		}()
		<-entered
		if code, body := get(t, base+"/metrics"); code != http.StatusServiceUnavailable {
			t.Errorf("second scrape while one is running = %d %q, want 503", code, body)
		}
		close(release)
		if code := <-first; code != http.StatusOK {
			t.Errorf("first scrape = %d, want 200", code)
		}
	})
}

// blockingCollector holds the first scrape inside Gather until released, so a test can have one scrape
// in flight for sure.
type blockingCollector struct{ entered, release chan struct{} }

var blockingDesc = prometheus.NewDesc("test_blocking", "Blocks the first scrape.", nil, nil)

func (b blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- blockingDesc }
func (b blockingCollector) Collect(ch chan<- prometheus.Metric) {
	select {
	case <-b.release:
	default:
		close(b.entered)
		<-b.release
	}
	ch <- prometheus.MustNewConstMetric(blockingDesc, prometheus.GaugeValue, 1)
}
