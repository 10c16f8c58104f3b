// Package httpserver is the HTTP server every long-running zonetoll service runs: /metrics from the
// service's own registry, /healthz and /readyz with checks the service registers, the service's own
// routes, timeouts on every connection, and a graceful shutdown with a deadline.
package httpserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zonetoll/zonetoll/shared/metricdef"
)

// Config holds the server settings. Embed it in a service's configuration under the field name HTTP so
// its variables become ZONETOLL_HTTP_*.
type Config struct {
	ListenAddress      string        `split_words:"true" default:":8080" desc:"Address the HTTP server (metrics, health, API) listens on."`
	ReadHeaderTimeout  time.Duration `split_words:"true" default:"5s" desc:"Time a client has to send request headers; guards against slow-header attacks."`
	ReadTimeout        time.Duration `split_words:"true" default:"30s" desc:"Time a client has to send a whole request, body included."`
	WriteTimeout       time.Duration `split_words:"true" default:"30s" desc:"Time the server has to write a response."`
	IdleTimeout        time.Duration `split_words:"true" default:"2m" desc:"Time an idle keep-alive connection stays open."`
	MaxHeaderBytes     int           `split_words:"true" default:"65536" desc:"Largest request header accepted, in bytes; larger gets 431."`
	ShutdownTimeout    time.Duration `split_words:"true" default:"20s" desc:"On SIGTERM, how long in-flight requests may take before connections are closed."`
	MetricsMaxInFlight int           `split_words:"true" default:"4" desc:"Concurrent /metrics scrapes served; more get 503."`
	CheckTimeout       time.Duration `split_words:"true" default:"5s" desc:"Time all /healthz or /readyz checks together may take."`
	TLSCertFile        string        `split_words:"true" desc:"PEM certificate (chain) to serve HTTPS with; empty serves plain HTTP. Re-read when the file changes, so a rotated certificate needs no restart."`
	TLSKeyFile         string        `split_words:"true" desc:"PEM private key of TLS_CERT_FILE."`
}

// Check reports whether one part of the service is healthy or ready; a non-nil error says why not.
type Check func(ctx context.Context) error

type namedCheck struct {
	name  string
	check Check
}

// Server serves a service's endpoints. Create it with New, add routes and checks, then Serve.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	srv      *http.Server
	metrics  *metrics
	stopping atomic.Bool

	mu       sync.Mutex
	ln       net.Listener
	liveness []namedCheck
	ready    []namedCheck
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	var s metricdef.Set
	// Labels of several names, which metricdef's vectors do not take.
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zonetoll_http_requests_total",
			Help: "HTTP requests served, by route, method and status code.",
		}, []string{"handler", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "zonetoll_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"handler", "method"}),
		inFlight: s.Gauge("zonetoll_http_requests_in_flight", "HTTP requests being served now."),
	}
	s.Collector(m.requests)
	s.Collector(m.duration)
	if err := s.Register(reg, "http metrics"); err != nil {
		return nil, err
	}
	return m, nil
}

// New builds a server whose /metrics serves reg (and whose own request metrics are registered there).
func New(cfg Config, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log.With("component", "httpserver"), mux: http.NewServeMux(), metrics: m}
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("ZONETOLL_HTTP_TLS_CERT_FILE and ZONETOLL_HTTP_TLS_KEY_FILE must be set together")
	}
	if cfg.TLSCertFile != "" {
		kp, err := newKeyPair(cfg.TLSCertFile, cfg.TLSKeyFile, s.log)
		if err != nil {
			return nil, err
		}
		s.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: kp.get}
	}
	s.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		Registry:            reg,
		MaxRequestsInFlight: cfg.MetricsMaxInFlight,
		Timeout:             cfg.WriteTimeout,
		EnableOpenMetrics:   true,
	}))
	s.Handle("GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveChecks(w, r, s.checks(&s.liveness), false)
	}))
	s.Handle("GET /readyz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serveChecks(w, r, s.checks(&s.ready), true)
	}))
	return s, nil
}

// Handle registers a route (a net/http ServeMux pattern such as "POST /v1/reports"), instrumented with
// the request metrics under the pattern's path.
func (s *Server) Handle(pattern string, h http.Handler) {
	route := pattern
	if _, path, ok := strings.Cut(pattern, " "); ok {
		route = path
	}
	instrumented := promhttp.InstrumentHandlerInFlight(s.metrics.inFlight,
		promhttp.InstrumentHandlerDuration(s.metrics.duration.MustCurryWith(prometheus.Labels{"handler": route}),
			promhttp.InstrumentHandlerCounter(s.metrics.requests.MustCurryWith(prometheus.Labels{"handler": route}), h)))
	s.mux.Handle(pattern, instrumented)
}

// AddHealthCheck adds a liveness check to /healthz: failing it means the process should be restarted.
func (s *Server) AddHealthCheck(name string, c Check) { s.add(&s.liveness, name, c) }

// AddReadinessCheck adds a check to /readyz: failing it means the service should get no traffic yet
// (caches not synced, no leader lease needed, ...).
func (s *Server) AddReadinessCheck(name string, c Check) { s.add(&s.ready, name, c) }

func (s *Server) add(list *[]namedCheck, name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	*list = append(*list, namedCheck{name: name, check: c})
}

func (s *Server) checks(list *[]namedCheck) []namedCheck {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]namedCheck(nil), *list...)
}

// serveChecks writes one line per check in the format of the Kubernetes API server ("[+]name ok",
// "[-]name failed: reason") so people and probes read it the same way.
func (s *Server) serveChecks(w http.ResponseWriter, r *http.Request, checks []namedCheck, readiness bool) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CheckTimeout)
	defer cancel()
	var b strings.Builder
	healthy := true
	if readiness && s.stopping.Load() {
		healthy = false
		b.WriteString("[-]shutdown failed: server is shutting down\n")
	}
	for _, c := range checks {
		if err := c.check(ctx); err != nil {
			healthy = false
			fmt.Fprintf(&b, "[-]%s failed: %v\n", c.name, err)
			continue
		}
		fmt.Fprintf(&b, "[+]%s ok\n", c.name)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if healthy {
		b.WriteString("ok\n")
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
		b.WriteString("not ok\n")
	}
	_, _ = w.Write([]byte(b.String()))
}

// Listen binds the configured address. Serve calls it when it was not called before; calling it first
// lets a caller learn the address of ":0".
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.ListenAddress, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound address, or nil before Listen.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Serve serves until ctx is done, then shuts down gracefully: /readyz fails at once, new connections are
// refused, and in-flight requests get ShutdownTimeout to finish before their connections are closed.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.log.Info("http server listening", "address", s.Addr().String())
	errc := make(chan error, 1)
	go func() {
		if s.srv.TLSConfig != nil {
			errc <- s.srv.ServeTLS(s.ln, "", "") // the certificate comes from TLSConfig.GetCertificate
			return
		}
		errc <- s.srv.Serve(s.ln)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serving http on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	s.stopping.Store(true)
	s.log.Info("http server shutting down", "deadline", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if err != nil {
		_ = s.srv.Close()
		err = fmt.Errorf("shutting down http server: requests still running after %s: %w", s.cfg.ShutdownTimeout, err)
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serving http: %w", serr))
	}
	return err
}
