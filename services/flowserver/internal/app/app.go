// Package app wires the flowserver service: its settings, the resolver and its informers, the
// ingest endpoint, the traffic metrics and the flow log.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/metadata"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/auth"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/binding"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/dedupe"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/flowlog"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/ingest"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/markstore"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/resolve"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/services"
	"github.com/zonetoll/zonetoll/services/flowserver/internal/traffic"
	"github.com/zonetoll/zonetoll/shared/config"
	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
)

// Config is every setting of flowserver, read from ZONETOLL_* variables.
type Config struct {
	servicecmd.Common
	Kube      kubeclient.Config
	Zone      string        `desc:"This server's zone in per-zone mode: reports from nodes of other zones are still counted, and counted in zonetoll_flowserver_foreign_zone_reports_total. Empty: one server for all zones."`
	Namespace string        `default:"zonetoll" desc:"Namespace zonetoll runs in; the default agent account is flowagent in it."`
	Auth      Auth          `split_words:"true"`
	Ingest    Ingest        `split_words:"true"`
	CidrsFile string        `split_words:"true" desc:"YAML or JSON file of named CIDRs with kind, zone and region (managed databases, VPC subnets); see docs/flowserver.md. Empty: none."`
	MaxSeries int           `split_words:"true" default:"20000" desc:"Series limit of each traffic metric; past it, bytes go to an overflow series (namespace, workload and kind __overflow__, zones kept) and zonetoll_flowserver_series_overflow_bytes_total counts them."`
	SeriesTTL time.Duration `split_words:"true" default:"1h" desc:"A traffic series not updated for this long is removed (its workload is gone or silent); 0 keeps series forever."`
	GonePods  int           `split_words:"true" default:"65536" desc:"Addresses of deleted or finished pods remembered (LRU), so late reports and reused IPs are attributed to the right pod."`
	Dedupe    Dedupe
	FlowLog   FlowLog  `split_words:"true"`
	Shutdown  Shutdown `split_words:"true"`
}

// Shutdown orders the end of a process on SIGTERM.
type Shutdown struct {
	// One scrape interval: components/monitoring's PodMonitor and costcalc scrape every 30 s.
	MetricsGrace time.Duration `split_words:"true" default:"30s" desc:"On SIGTERM, after reports stop being taken (503, /readyz failing) and the dedupe marks are saved, how long /metrics and /healthz are still served, so a last scrape sees the final counters. Set it to the longest scrape interval of what scrapes this server; the pod's terminationGracePeriodSeconds must cover it."`
}

// Auth configures who may send reports.
type Auth struct {
	ServiceAccounts  []string      `split_words:"true" desc:"Service accounts (namespace/name) whose tokens may send reports; empty means <ZONETOLL_NAMESPACE>/flowagent."`
	Audiences        []string      `desc:"Audiences the tokens must be issued for (TokenReview spec.audiences); empty means the API server's."`
	CacheTTL         time.Duration `split_words:"true" default:"1m" desc:"How long an accepted token is trusted before it is reviewed again."`
	NegativeCacheTTL time.Duration `split_words:"true" default:"10s" desc:"How long a refused token is refused without asking the API server again."`
	// Off by default: such a token names no node, so its holder could report as any node.
	AllowUnboundTokens bool `split_words:"true" default:"false" desc:"Accept tokens bound to no pod (kubectl create token, a legacy Secret): they name no node, so their reports may name any node. Off: refused with 403, reason unbound_token; agents send their pods' projected tokens, which are bound."`
}

// Ingest bounds what reports may cost.
type Ingest struct {
	MaxBodyBytes int64   `split_words:"true" default:"16777216" desc:"Largest request body as sent, compressed or not (413 beyond)."`
	MaxFlows     int     `split_words:"true" default:"262144" desc:"Most flows in one report (413 beyond); also bounds the decompressed size."`
	NodeRate     float64 `split_words:"true" default:"2" desc:"Reports per second each agent may send on average (429 with Retry-After beyond), checked before the body is read; an agent is its service account and the node its token is bound to (its address for a token bound to no pod). An agent catching up after an outage sends its spool this fast."`
	NodeBurst    int     `split_words:"true" default:"20" desc:"Reports an agent may send at once above NODE_RATE."`
	MaxInFlight  int     `split_words:"true" default:"8" desc:"Reports processed at once (503 with Retry-After beyond); each may hold a decoded report in memory."`
	// The agent sends one report at a time; a second covers a retry racing an attempt the agent
	// gave up on while the server still reads it.
	MaxInFlightPerNode int `split_words:"true" default:"2" desc:"Reports one agent may have in progress at once (429, reason identity_busy, beyond), so one agent's slow bodies cannot hold every slot."`
	// 128 MiB: with the process's ~90 MiB at 10,000 pods, well under the manifests' 400 MiB
	// GOMEMLIMIT; a maximal report (16 MiB body, 262,144 flows) reserves about 65 MiB.
	MaxBytesInFlight     int64 `split_words:"true" default:"134217728" desc:"Byte budget of the reports in progress (503 with Retry-After beyond): each reserves its body (Content-Length), its decompressed size (from the gzip trailer) and 128 bytes per flow it could hold, before reading or inflating. A report larger than the budget runs alone."`
	MaxStreamedBodyBytes int64 `split_words:"true" default:"1048576" desc:"Largest body sent without Content-Length (chunked), reserved in full before it is read (413 beyond); at most MAX_BODY_BYTES (a larger value means that). The agent always sends Content-Length."`
	// 400 Gbit/s: above the NICs of today's general-purpose instances, so only a forged or broken
	// report reaches it; the first window after an agent restart also holds what its pinned map
	// counted while the agent was down, which wants headroom.
	MaxClockSkew      time.Duration `split_words:"true" default:"1m" desc:"How far a report's window may end after this server's clock (422, reason window_in_future, beyond). Reports whose window started more than ZONETOLL_DEDUPE_RETENTION minus this ago are refused too (422, window_too_old): they may have been counted and forgotten."`
	MaxBytesPerSecond uint64        `split_words:"true" default:"50000000000" desc:"Most layer-3 bytes one report may claim per second of its window (422, reason implausible_bytes, beyond); the default is 400 Gbit/s. Windows shorter than 1s count as 1s. 0 turns the check off."`
}

// Dedupe configures exactly-once: one high-water mark (highest sequence applied) per agent process.
type Dedupe struct {
	Retention time.Duration `default:"24h" desc:"How long an agent process's mark (the highest sequence applied for its node and boot id) is remembered after its last report; reports whose window started longer ago than this minus ZONETOLL_INGEST_MAX_CLOCK_SKEW are refused (window_too_old). Keep it above the agents' longest outage."`
	// 8,000 marks of nodes with 41-byte names take ~820 kB, under the ConfigMap's 1 MiB.
	MaxKeys      int           `split_words:"true" default:"8000" desc:"Most remembered marks (one per agent process that had a report applied within the retention); the least recently updated are forgotten first (zonetoll_flowserver_dedupe_evicted_total). Must fit in the ConfigMap: ~100 bytes a mark."`
	ConfigMap    string        `split_words:"true" desc:"ConfigMap in ZONETOLL_NAMESPACE that keeps the marks across restarts ({zone} is replaced by ZONETOLL_ZONE): read before the server takes reports, written every SAVE_INTERVAL when changed and on shutdown. Empty: kept in memory only, and a restart forgets them."`
	SaveInterval time.Duration `split_words:"true" default:"10s" desc:"How often changed marks are written to CONFIG_MAP. A crash loses the marks of the last interval: a report applied then whose answer was lost is counted again (docs/flowserver.md)."`
}

// FlowLog configures the JSON flow log.
type FlowLog struct {
	Output     string  `desc:"Where flow log lines go: empty (off), stdout, or a file path (appended)."`
	MinBytes   uint64  `split_words:"true" desc:"Only flows of at least this many bytes in a window are logged."`
	SampleRate float64 `split_words:"true" default:"1" desc:"Fraction of flows (at or above MIN_BYTES) logged, in (0, 1]."`
}

// Validate checks what envconfig cannot.
func (c *Config) Validate() error {
	if err := c.Kube.Validate("ZONETOLL_KUBE_"); err != nil {
		return err
	}
	if _, err := auth.ParseAccounts(c.Auth.ServiceAccounts); err != nil {
		return config.Invalid("ZONETOLL_AUTH_SERVICE_ACCOUNTS", fmt.Sprint(c.Auth.ServiceAccounts), "namespace/name items ("+err.Error()+")")
	}
	checks := []struct {
		ok       bool
		key, val string
		accepted string
	}{
		{c.Ingest.MaxBodyBytes > 0, "ZONETOLL_INGEST_MAX_BODY_BYTES", fmt.Sprint(c.Ingest.MaxBodyBytes), "a positive number of bytes"},
		{c.Ingest.MaxFlows > 0 && c.Ingest.MaxFlows <= 1<<24, "ZONETOLL_INGEST_MAX_FLOWS", fmt.Sprint(c.Ingest.MaxFlows), "an integer from 1 to 16777216"},
		{c.Ingest.NodeRate >= 0, "ZONETOLL_INGEST_NODE_RATE", fmt.Sprint(c.Ingest.NodeRate), "reports per second, 0 for no limit"},
		{c.Ingest.NodeBurst >= 1, "ZONETOLL_INGEST_NODE_BURST", fmt.Sprint(c.Ingest.NodeBurst), "an integer of at least 1"},
		{c.Ingest.MaxInFlight >= 1, "ZONETOLL_INGEST_MAX_IN_FLIGHT", fmt.Sprint(c.Ingest.MaxInFlight), "an integer of at least 1"},
		{c.Ingest.MaxInFlightPerNode >= 1, "ZONETOLL_INGEST_MAX_IN_FLIGHT_PER_NODE", fmt.Sprint(c.Ingest.MaxInFlightPerNode), "an integer of at least 1"},
		{c.Ingest.MaxBytesInFlight >= 1<<20, "ZONETOLL_INGEST_MAX_BYTES_IN_FLIGHT", fmt.Sprint(c.Ingest.MaxBytesInFlight), "a number of bytes, at least 1048576"},
		{c.Ingest.MaxStreamedBodyBytes >= 1, "ZONETOLL_INGEST_MAX_STREAMED_BODY_BYTES", fmt.Sprint(c.Ingest.MaxStreamedBodyBytes), "a positive number of bytes"},
		{c.MaxSeries >= 1, "ZONETOLL_MAX_SERIES", fmt.Sprint(c.MaxSeries), "an integer of at least 1"},
		{c.SeriesTTL >= 0, "ZONETOLL_SERIES_TTL", c.SeriesTTL.String(), "a duration, 0 to keep series"},
		{c.GonePods >= 1, "ZONETOLL_GONE_PODS", fmt.Sprint(c.GonePods), "an integer of at least 1"},
		{c.Dedupe.Retention > 0, "ZONETOLL_DEDUPE_RETENTION", c.Dedupe.Retention.String(), "a positive duration"},
		{c.Ingest.MaxClockSkew >= 0 && c.Ingest.MaxClockSkew < c.Dedupe.Retention, "ZONETOLL_INGEST_MAX_CLOCK_SKEW", c.Ingest.MaxClockSkew.String(), "a duration of at least 0 and below ZONETOLL_DEDUPE_RETENTION"},
		{c.Dedupe.MaxKeys >= 1, "ZONETOLL_DEDUPE_MAX_KEYS", fmt.Sprint(c.Dedupe.MaxKeys), "an integer of at least 1"},
		{c.Dedupe.SaveInterval > 0, "ZONETOLL_DEDUPE_SAVE_INTERVAL", c.Dedupe.SaveInterval.String(), "a positive duration"},
		{!strings.Contains(c.Dedupe.ConfigMap, "{zone}") || c.Zone != "", "ZONETOLL_DEDUPE_CONFIG_MAP", c.Dedupe.ConfigMap, "a ConfigMap name; {zone} only with ZONETOLL_ZONE set"},
		{c.Shutdown.MetricsGrace >= 0, "ZONETOLL_SHUTDOWN_METRICS_GRACE", c.Shutdown.MetricsGrace.String(), "a duration of at least 0"},
		{c.FlowLog.SampleRate > 0 && c.FlowLog.SampleRate <= 1, "ZONETOLL_FLOW_LOG_SAMPLE_RATE", fmt.Sprint(c.FlowLog.SampleRate), "a fraction in (0, 1]"},
		{c.Auth.CacheTTL > 0, "ZONETOLL_AUTH_CACHE_TTL", c.Auth.CacheTTL.String(), "a positive duration"},
		{c.Auth.NegativeCacheTTL > 0, "ZONETOLL_AUTH_NEGATIVE_CACHE_TTL", c.Auth.NegativeCacheTTL.String(), "a positive duration"},
	}
	for _, ch := range checks {
		if !ch.ok {
			return config.Invalid(ch.key, ch.val, ch.accepted)
		}
	}
	if c.CidrsFile != "" {
		if _, err := resolve.LoadCIDRs(c.CidrsFile); err != nil {
			return fmt.Errorf("ZONETOLL_CIDRS_FILE: %w", err)
		}
	}
	return nil
}

// Spec is the flowserver command line.
func Spec() servicecmd.Spec[Config] {
	return servicecmd.Spec[Config]{
		Name:       "flowserver",
		Usage:      "authenticates agent reports, resolves addresses to workloads and zones, and exposes traffic metrics",
		Run:        Run,
		Kubernetes: true,
		// Run stops taking reports, saves the dedupe marks and serves a last scrape before it returns.
		ServeThroughShutdown: true,
	}
}

// Run serves reports until ctx is done.
func Run(ctx context.Context, cfg *Config, env servicecmd.Env) error {
	rc, err := kubeclient.RESTConfig(env.Kubeconfig, cfg.Kube, env.Info.UserAgent())
	if err != nil {
		return err
	}
	clients, err := kubeclient.NewRESTClients(rc,
		kubeclient.Group{Version: corev1.SchemeGroupVersion, AddToScheme: corev1.AddToScheme},
		kubeclient.Group{Version: authnv1.SchemeGroupVersion, AddToScheme: authnv1.AddToScheme},
		kubeclient.Group{Version: discoveryv1.SchemeGroupVersion, AddToScheme: discoveryv1.AddToScheme})
	if err != nil {
		return err
	}
	core, authn1, disc := clients[0], clients[1], clients[2]
	mc, err := metadata.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("creating metadata client: %w", err)
	}
	var cidrs []resolve.CIDR
	if cfg.CidrsFile != "" {
		if cidrs, err = resolve.LoadCIDRs(cfg.CidrsFile); err != nil {
			return err
		}
	}
	res, err := resolve.New(resolve.Options{CIDRs: cidrs, GoneCapacity: cfg.GonePods})
	if err != nil {
		return fmt.Errorf("building resolver: %w", err)
	}
	inf, err := resolve.NewInformers(res, core, mc, time.Now)
	if err != nil {
		return err
	}
	svcs := services.New()
	svcInf, err := services.NewInformers(svcs, core, disc)
	if err != nil {
		return err
	}
	if err := env.Registry.Register(services.NewCollector(svcs, res.NodeZones)); err != nil {
		return fmt.Errorf("registering Service metrics: %w", err)
	}
	kinfo, err := newKubernetesInfo(env.Registry)
	if err != nil {
		return err
	}
	accounts := cfg.Auth.ServiceAccounts
	if len(accounts) == 0 {
		accounts = []string{cfg.Namespace + "/flowagent"}
	}
	authn, err := auth.New(auth.RESTReviewer{Client: authn1}, auth.Options{
		Allowed: accounts, Audiences: cfg.Auth.Audiences,
		TTL: cfg.Auth.CacheTTL, NegativeTTL: cfg.Auth.NegativeCacheTTL,
	}, env.Registry)
	if err != nil {
		return fmt.Errorf("configuring authentication: %w", err)
	}
	tstore, err := traffic.NewStore(traffic.Options{MaxSeries: cfg.MaxSeries, TTL: cfg.SeriesTTL}, env.Registry)
	if err != nil {
		return fmt.Errorf("registering traffic metrics: %w", err)
	}
	if err := env.Registry.Register(tstore); err != nil {
		return fmt.Errorf("registering traffic metrics: %w", err)
	}
	seen := dedupe.New(cfg.Dedupe.Retention, cfg.Dedupe.MaxKeys)
	if err := registerStateMetrics(env.Registry, res, seen); err != nil {
		return err
	}
	var store *markstore.Store
	if cfg.Dedupe.ConfigMap != "" {
		store = markstore.New(core, cfg.Namespace, strings.ReplaceAll(cfg.Dedupe.ConfigMap, "{zone}", cfg.Zone))
	}
	mk, err := newMarks(seen, store, env.Registry, env.Logger.With("component", "dedupe"))
	if err != nil {
		return err
	}
	var draining atomic.Bool
	var flog *flowlog.Logger
	if cfg.FlowLog.Output != "" {
		w, closeLog, err := openFlowLog(cfg.FlowLog.Output)
		if err != nil {
			return err
		}
		defer closeLog()
		if flog, err = flowlog.New(w, flowlog.Options{MinBytes: cfg.FlowLog.MinBytes, SampleRate: cfg.FlowLog.SampleRate}, env.Registry); err != nil {
			return fmt.Errorf("registering flow log metrics: %w", err)
		}
	}
	h, err := ingest.New(ingest.Options{
		Limits: ingest.Limits{
			MaxBodyBytes: cfg.Ingest.MaxBodyBytes, MaxFlows: cfg.Ingest.MaxFlows,
			NodeRate: cfg.Ingest.NodeRate, NodeBurst: cfg.Ingest.NodeBurst, MaxInFlight: cfg.Ingest.MaxInFlight,
			MaxBytesPerSecond:      cfg.Ingest.MaxBytesPerSecond,
			MaxInFlightPerIdentity: cfg.Ingest.MaxInFlightPerNode, MaxBytesInFlight: cfg.Ingest.MaxBytesInFlight,
			MaxStreamedBodyBytes: cfg.Ingest.MaxStreamedBodyBytes,
			MaxClockSkew:         cfg.Ingest.MaxClockSkew, MaxWindowAge: cfg.Dedupe.Retention - cfg.Ingest.MaxClockSkew,
		},
		Zone: cfg.Zone, Auth: authn, Binder: binding.New(inf, binding.Options{AllowUnbound: cfg.Auth.AllowUnboundTokens}), Resolver: res, Services: svcs, Store: tstore, Seen: seen, FlowLog: flog,
		Logger: env.Logger.With("component", "ingest"),
		// A report applied before the Service caches synced would put bytes of Services not seen
		// yet into no per-Service series at all; one applied before the dedupe marks are loaded
		// could be the retry of a report the previous process applied.
		Synced: func() bool { return inf.Synced() && svcInf.Synced() && mk.loaded.Load() },
	}, env.Registry)
	if err != nil {
		return err
	}
	env.Server.Handle("POST "+ingest.Path, h)
	env.Server.AddReadinessCheck("informers-synced", func(context.Context) error {
		if !inf.Synced() {
			return errors.New("pod, node, ReplicaSet and Job caches have not synced yet")
		}
		if !svcInf.Synced() {
			return errors.New("the Service and EndpointSlice caches have not synced yet")
		}
		return nil
	})
	env.Server.AddReadinessCheck("dedupe-marks-loaded", func(context.Context) error {
		if !mk.loaded.Load() {
			return fmt.Errorf("the dedupe marks have not been read from ConfigMap %s yet", store.Name())
		}
		return nil
	})
	env.Server.AddReadinessCheck("taking-reports", func(context.Context) error {
		if draining.Load() {
			return errors.New("shutting down: reports go to the next server")
		}
		return nil
	})
	env.Started()

	var wg sync.WaitGroup
	inf.Start(ctx)
	svcInf.Start(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		kinfo.discover(ctx, core, env.Logger.With("component", "kubeversion"))
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		housekeeping(ctx, tstore, seen)
	}()
	saverDone := make(chan struct{})
	go func() {
		defer close(saverDone)
		mk.run(ctx, cfg.Dedupe.SaveInterval)
	}()
	env.Logger.Info("accepting reports", "path", ingest.Path, "zone", cfg.Zone, "accounts", accounts, "cidrs", len(cidrs), "dedupe_configmap", cfg.Dedupe.ConfigMap)
	<-ctx.Done()

	// Shutdown, in order: stop taking reports (the agents keep them spooled for the next server),
	// let those in progress finish, save the marks they raised, then serve /metrics with the final
	// counters for one scrape interval.
	draining.Store(true)
	env.Logger.Info("shutting down: no more reports; finishing those in progress")
	dctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
	if err := h.Drain(dctx); err != nil {
		env.Logger.Warn("reports still in progress at shutdown; saving the marks anyway", "error", err)
	}
	cancel()
	<-saverDone
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	mk.save(sctx)
	cancel()
	env.Logger.Info("serving the final counters until the last scrape", "grace", cfg.Shutdown.MetricsGrace)
	time.Sleep(cfg.Shutdown.MetricsGrace)
	inf.Shutdown()
	svcInf.Shutdown()
	wg.Wait()
	return nil
}

// housekeeping expires idle series and old dedupe keys once a minute.
func housekeeping(ctx context.Context, store *traffic.Store, seen *dedupe.Window) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			store.Expire(now)
			seen.Expire(now)
		}
	}
}

func openFlowLog(output string) (io.Writer, func(), error) {
	if output == "stdout" {
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("opening flow log (ZONETOLL_FLOW_LOG_OUTPUT): %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}

// registerStateMetrics exposes the sizes of the resolver's and the dedupe window's tables, and the
// zone → region map costcalc uses to tell cross-zone from cross-region traffic.
func registerStateMetrics(reg prometheus.Registerer, res *resolve.Resolver, seen *dedupe.Window) error {
	zoneInfo := prometheus.NewDesc("zonetoll_zone_info", "1 for every zone of the nodes this flowserver knows, with its region.", []string{"zone", "region"}, nil)
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zonetoll_flowserver_pods", Help: "Pods in the resolver's cache (scheduled, not deleted)."},
			func() float64 { return float64(res.Stats().LivePods) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zonetoll_flowserver_nodes", Help: "Nodes in the resolver's cache."},
			func() float64 { return float64(res.Stats().Nodes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zonetoll_flowserver_gone_pod_addresses", Help: "Addresses of deleted or finished pods remembered for late reports (ZONETOLL_GONE_PODS)."},
			func() float64 { return float64(res.Stats().GoneAddresses) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "zonetoll_flowserver_dedupe_keys", Help: "Dedupe marks remembered (one per agent process: the highest sequence applied for its node and boot id)."},
			func() float64 { return float64(seen.Len()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "zonetoll_flowserver_dedupe_evicted_total", Help: "Dedupe marks forgotten before ZONETOLL_DEDUPE_RETENTION because ZONETOLL_DEDUPE_MAX_KEYS was reached."},
			func() float64 { return float64(seen.Evicted()) }),
		collectorFunc{desc: zoneInfo, collect: func(ch chan<- prometheus.Metric) {
			for zone, region := range res.Zones() {
				ch <- prometheus.MustNewConstMetric(zoneInfo, prometheus.GaugeValue, 1, zone, region)
			}
		}},
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering state metrics: %w", err)
		}
	}
	return nil
}

type collectorFunc struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collectorFunc) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collectorFunc) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
