package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/shared/netns"
	"github.com/zonetoll/zonetoll/testkit/freeport"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// NameBase starts the names of every network namespace and run directory of the demo, followed by the
// process id, so a later run can tell a dead run's leftovers from a live one's.
const NameBase = "ztdemo-"

// Clouds whose prices the demo shows; one `costcalc run` per cloud.
var Clouds = []string{"aws", "gcp", "azure"}

// Options configure a demo run.
type Options struct {
	Repo     string        // the zonetoll working tree (holds go.work)
	BinDir   string        // where the service binaries are built; empty: <user cache>/zonetoll/demo/bin
	OutDir   string        // where the HTML reports are written (kept after the run); empty: <user cache>/zonetoll/demo
	Interval time.Duration // the agents' drain interval; 0 means 1s
	KeepDir  bool          // keep the run directory (logs, flow logs) after Close, for debugging
	// Routing runs the routing parts of a control plane (the EndpointSlice controller, a kube-proxy in
	// every node's namespace): the api Service is dual-stack, its slices are the controller's, the
	// frontend calls it by its ClusterIPs (RoutedCalls), and ApplyAdvice switches its routing.
	Routing  bool
	Progress io.Writer    // progress lines; nil discards them
	Logger   *slog.Logger // nil discards
}

// Demo is a running demo cluster.
type Demo struct {
	Model     *Model
	Dir       string // run directory: logs, kubeconfigs, Prometheus data, bpffs (removed by Close)
	Cluster   *testcluster.Cluster
	Servers   map[string]*Proc // by zone
	Agents    map[string]*Proc // by node name
	Costcalcs map[string]*Proc // by cloud
	TLS       *TLS             // the flowservers' certificate and the CA everything else trusts
	Labeler   *Proc
	Prom      *Proc
	Gen       *Generator
	FlowLogs  map[string]string // flow log path by zone
	// With Options.Routing: the EndpointSlice controller and kube-proxies, and the api Service's
	// ClusterIPs (IPv4, IPv6).
	Routing       *Routing
	APIClusterIPs [2]netip.Addr
	Events        []string // what happened, for the output and the test
	// Restarts is every restart of a service during the phases, in order (restarts.go).
	Restarts []Restart

	opts     Options
	progress io.Writer
	bpffs    string
	phases   int
	began    time.Time
	// promStarted is when Prometheus started, before any traffic: the counters' totals start there.
	promStarted time.Time
}

func (d *Demo) say(format string, args ...any) {
	fmt.Fprintf(d.progress, "[demo %5.1fs] "+format+"\n", append([]any{time.Since(d.began).Seconds()}, args...)...)
}

// Start builds the binaries, removes leftovers of killed runs, starts the test cluster, builds the
// network, registers nodes and pods, and starts every service and Prometheus. On error everything made so
// far is removed.
func Start(ctx context.Context, opts Options) (_ *Demo, err error) {
	if opts.Interval == 0 {
		opts.Interval = time.Second
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	opts.Progress = &lockedWriter{w: opts.Progress}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return nil, fmt.Errorf("finding the cache dir: %w", err)
	}
	if opts.BinDir == "" {
		opts.BinDir = CheckoutBinDir(cache, opts.Repo, "bin")
	}
	if opts.OutDir == "" {
		opts.OutDir = filepath.Join(cache, "zonetoll", "demo")
	}
	d := &Demo{opts: opts, progress: opts.Progress, Servers: map[string]*Proc{}, Agents: map[string]*Proc{},
		Costcalcs: map[string]*Proc{}, FlowLogs: map[string]string{}, began: time.Now()}
	if left := RemoveLeftovers(NameBase); len(left) > 0 {
		d.say("removed %d leftovers of an earlier run that was killed: %s", len(left), strings.Join(left, ", "))
	}
	for _, bin := range []string{"ip", PrometheusBinary} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("%s not found (hack/setup.sh installs iproute2 and prometheus): %w", bin, err)
		}
	}

	d.say("building the test cluster binaries (kube-apiserver, etcd; the first build takes minutes)")
	done := stillRunning(d.progress, "building kube-apiserver and etcd")
	_, err = testcluster.Build(ctx, testcluster.BuildOptions{Progress: d.progress})
	done()
	if err != nil {
		return nil, fmt.Errorf("building the test cluster binaries: %w", err)
	}
	if opts.Routing {
		v, err := testcluster.Version()
		if err != nil {
			return nil, err
		}
		d.say("building kube-controller-manager and kube-proxy %s (the first build takes minutes)", v)
		done := stillRunning(d.progress, "building kube-controller-manager and kube-proxy")
		_, err = testcluster.BuildRoutingVersion(ctx, v, testcluster.BuildOptions{Progress: d.progress})
		done()
		if err != nil {
			return nil, fmt.Errorf("building the test cluster's routing parts: %w", err)
		}
		if _, err := exec.LookPath("nft"); err != nil {
			return nil, fmt.Errorf("nft not found (kube-proxy's nftables mode runs it; hack/setup.sh installs nftables): %w", err)
		}
	}
	d.say("building the services into %s", opts.BinDir)
	if err := BuildServices(ctx, opts.Repo, opts.BinDir, d.progress); err != nil {
		return nil, err
	}

	prefix := fmt.Sprintf("%s%d-", NameBase, os.Getpid())
	if d.Dir, err = os.MkdirTemp("", prefix); err != nil {
		return nil, fmt.Errorf("creating the run directory: %w", err)
	}
	d.Model = NewModel(prefix)
	defer func() {
		if err != nil {
			d.Close()
		}
	}()

	d.say("starting kube-apiserver and etcd")
	copts := testcluster.Options{Logger: opts.Logger}
	if opts.Routing {
		copts.ExtraAPIServerArgs = RoutingAPIServerArgs()
	}
	d.Cluster, err = testcluster.Start(ctx, copts)
	if err != nil {
		return nil, fmt.Errorf("starting the test cluster: %w", err)
	}
	d.say("building the network: 3 zones × 2 nodes, %d pods, a managed cache (network namespaces %s*)", len(d.Model.Pods), prefix)
	if err := BuildNetwork(ctx, d.Model); err != nil {
		return nil, err
	}
	d.say("registering nodes, replicasets and pods through the API")
	accounts, err := populate(ctx, d.Cluster, d.Model, d.opts.Repo, d.Dir, opts.Routing)
	if err != nil {
		return nil, err
	}
	if opts.Routing {
		if err := d.startRouting(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.startServices(ctx, accounts); err != nil {
		return nil, err
	}
	d.say("opening the application's sockets (UDP port %d in every pod)", Port)
	if d.Gen, err = NewGenerator(d.Model); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Demo) bin(s string) string { return filepath.Join(d.opts.BinDir, s) }

func (d *Demo) proc(name, bin string, env []string, args ...string) (*Proc, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	// Prometheus, three costcalc runs and the demo itself scrape the flowservers at once.
	env = append([]string{"ZONETOLL_HTTP_LISTEN_ADDRESS=" + addr, "ZONETOLL_LOG_FORMAT=text", "ZONETOLL_HTTP_METRICS_MAX_IN_FLIGHT=16"}, env...)
	return &Proc{Name: name, Bin: bin, Args: args, Env: env, Addr: addr, Log: filepath.Join(d.Dir, "logs", name+".log")}, nil
}

func (d *Demo) startServices(ctx context.Context, accounts map[string]Account) error {
	m := d.Model
	if err := os.MkdirAll(filepath.Join(d.Dir, "logs"), 0o755); err != nil {
		return fmt.Errorf("creating the log dir: %w", err)
	}
	cidrs := filepath.Join(d.Dir, "cidrs.yaml")
	var b strings.Builder
	fmt.Fprintf(&b, "cidrs:\n- name: %s\n  zone: %s\n  region: %s\n  cidrs: [", m.Ext.Name, m.Ext.Zone, m.Ext.Region)
	for i, c := range m.Ext.CIDRs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", c.String())
	}
	b.WriteString("]\n")
	if err := writeFile(cidrs, b.String()); err != nil {
		return err
	}

	d.say("starting zonelabeler")
	var err error
	d.Labeler, err = d.proc("zonelabeler", d.bin("zonelabeler"), []string{"ZONETOLL_LEADER_ELECTION_NAMESPACE=" + ToolNamespace},
		"run", "--kubeconfig", accounts["zonelabeler"].Kubeconfig)
	if err != nil {
		return err
	}
	if err := d.Labeler.Start(ctx); err != nil {
		return err
	}

	d.say("starting a flowserver per zone (HTTPS, with a CA made for this run)")
	if d.TLS, err = newTLS(filepath.Join(d.Dir, "tls")); err != nil {
		return err
	}
	for _, z := range m.Zones {
		d.FlowLogs[z] = filepath.Join(d.Dir, "flows-"+z+".jsonl")
		p, err := d.proc("flowserver-"+z, d.bin("flowserver"), []string{
			"ZONETOLL_ZONE=" + z, "ZONETOLL_NAMESPACE=" + ToolNamespace, "ZONETOLL_CIDRS_FILE=" + cidrs,
			"ZONETOLL_FLOW_LOG_OUTPUT=" + d.FlowLogs[z],
			"ZONETOLL_HTTP_TLS_CERT_FILE=" + d.TLS.CertFile, "ZONETOLL_HTTP_TLS_KEY_FILE=" + d.TLS.KeyFile,
			// The demo's agents are processes, not pods: they share one token bound to no pod, which
			// the flowserver refuses by default (a pod's own projected token names its node).
			"ZONETOLL_AUTH_ALLOW_UNBOUND_TOKENS=true",
			// On SIGTERM /metrics stays up this long for a last scrape by Prometheus and costcalc (restarts.go;
			// the default, 30 s, is a Prometheus scrape interval and past Proc.Stop's 30 s SIGKILL).
			MetricsGraceSetting + "=" + MetricsGrace.String(),
			"ZONETOLL_DEDUPE_CONFIG_MAP=" + DedupeConfigMap,
		}, "run", "--kubeconfig", accounts["flowserver"].Kubeconfig)
		if err != nil {
			return err
		}
		p.Client = d.TLS.Client
		d.Servers[z] = p
		if err := p.Start(ctx); err != nil {
			return err
		}
	}

	d.bpffs = filepath.Join(d.Dir, "bpffs")
	if err := os.MkdirAll(d.bpffs, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", d.bpffs, err)
	}
	if err := unix.Mount("bpf", d.bpffs, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting a bpffs on %s: %w", d.bpffs, err)
	}
	d.say("starting a flowagent per node (each attached in its node's network namespace)")
	for _, n := range m.Nodes {
		if err := os.MkdirAll(filepath.Join(d.Dir, "spool", n.Name), 0o700); err != nil {
			return fmt.Errorf("creating the spool dir of %s: %w", n.Name, err)
		}
		p, err := d.proc("flowagent-"+n.Name, d.bin("flowagent"), []string{
			"ZONETOLL_NODE_NAME=" + n.Name,
			"ZONETOLL_NETNS=" + filepath.Join(netns.Dir, n.Netns),
			"ZONETOLL_SERVER_URL=" + d.Servers[n.Zone].URL(""),
			"ZONETOLL_SERVER_CA_FILE=" + d.TLS.CAFile,
			"ZONETOLL_TOKEN_FILE=" + accounts["flowagent"].TokenFile,
			"ZONETOLL_INTERVAL=" + d.opts.Interval.String(),
			"ZONETOLL_BPF_MODE=netfilter",
			"ZONETOLL_BPF_PIN_DIR=" + filepath.Join(d.bpffs, n.Name),
			"ZONETOLL_SPOOL_DIR=" + filepath.Join(d.Dir, "spool", n.Name),
			"ZONETOLL_RETRY_MIN_BACKOFF=200ms",
			"ZONETOLL_RETRY_MAX_BACKOFF=2s",
		}, "run", "--kubeconfig", accounts["flowagent"].Kubeconfig)
		if err != nil {
			return err
		}
		d.Agents[n.Name] = p
		if err := p.Start(ctx); err != nil {
			return err
		}
	}

	var targets []string
	for _, z := range m.Zones {
		targets = append(targets, d.Servers[z].URL("/metrics"))
	}
	d.say("starting costcalc run for %s", strings.Join(Clouds, ", "))
	for _, cloud := range Clouds {
		p, err := d.proc("costcalc-"+cloud, d.bin("costcalc"), []string{
			"ZONETOLL_TARGETS=" + strings.Join(targets, ","), "ZONETOLL_PRICES_CLOUD=" + cloud,
			"ZONETOLL_SCRAPE_INTERVAL=" + ScrapeInterval.String(), "ZONETOLL_SCRAPE_TIMEOUT=" + ScrapeTimeout.String(), "ZONETOLL_SCRAPE_CA_FILE=" + d.TLS.CAFile,
		}, "run")
		if err != nil {
			return err
		}
		d.Costcalcs[cloud] = p
		if err := p.Start(ctx); err != nil {
			return err
		}
	}

	d.say("starting Prometheus (%s)", PrometheusBinary)
	d.promStarted = time.Now()
	if d.Prom, err = d.startPrometheus(ctx); err != nil {
		return err
	}
	return nil
}

// PrometheusBinary is Debian's Prometheus (hack/setup.sh installs the package).
const PrometheusBinary = "/usr/bin/prometheus"

func (d *Demo) startPrometheus(ctx context.Context) (*Proc, error) {
	jobs := map[string][]string{}
	for _, z := range d.Model.Zones {
		jobs["flowserver"] = append(jobs["flowserver"], d.Servers[z].Addr)
	}
	for _, n := range d.Model.Nodes {
		jobs["flowagent"] = append(jobs["flowagent"], d.Agents[n.Name].Addr)
	}
	for _, c := range Clouds {
		jobs["costcalc"] = append(jobs["costcalc"], d.Costcalcs[c].Addr)
	}
	jobs["zonelabeler"] = []string{d.Labeler.Addr}
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  scrape_timeout: %s\nscrape_configs:\n", promDuration(ScrapeInterval), promDuration(ScrapeTimeout))
	names := make([]string, 0, len(jobs))
	for j := range jobs {
		names = append(names, j)
	}
	sort.Strings(names)
	for _, j := range names {
		fmt.Fprintf(&b, "  - job_name: %s\n", j)
		if j == "flowserver" {
			fmt.Fprintf(&b, "    scheme: https\n    tls_config:\n      ca_file: %s\n", d.TLS.CAFile)
		}
		fmt.Fprintf(&b, "    static_configs:\n      - targets: [%q", jobs[j][0])
		for _, t := range jobs[j][1:] {
			fmt.Fprintf(&b, ", %q", t)
		}
		b.WriteString("]\n")
	}
	cfg := filepath.Join(d.Dir, "prometheus.yml")
	if err := writeFile(cfg, b.String()); err != nil {
		return nil, err
	}
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	p := &Proc{Name: "prometheus", Bin: PrometheusBinary, Addr: addr, ReadyPath: "/-/ready",
		Log: filepath.Join(d.Dir, "logs", "prometheus.log"),
		Args: []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(d.Dir, "prometheus"),
			"--web.listen-address=" + addr, "--storage.tsdb.retention.time=1d", "--log.level=warn"}}
	if err := p.Start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Snapshot is the cumulative state at one moment: what the generator sent, and what each flowserver,
// costcalc run and agent counted over all its lives as Prometheus has it (promread.go).
type Snapshot struct {
	At       time.Time
	Sent     map[[2]netip.Addr]PairCount
	Servers  map[string]metricstest.Samples // by zone
	Costs    map[string]metricstest.Samples // by cloud
	Agents   map[string]metricstest.Samples // by node
	AgentPID map[string]int
}

// Snap reads the ledger and the counters in Prometheus.
func (d *Demo) Snap(ctx context.Context) (*Snapshot, error) {
	at := time.Now()
	s := &Snapshot{At: at, Sent: d.Gen.Ledger.Snapshot(), AgentPID: map[string]int{}}
	c, err := d.PromCounters(ctx, at)
	if err != nil {
		return nil, err
	}
	s.Servers, s.Costs, s.Agents = c.Servers, c.Costs, c.Agents
	for n, p := range d.Agents {
		s.AgentPID[n] = p.PID()
	}
	return s, nil
}

// Phase is what happened between two snapshots.
type Phase struct {
	N          int
	Start, End *Snapshot
	Calls      []Call
	// Sending is how long the application sent: the phase's length without its pauses.
	Sending time.Duration
}

// Duration is how long the application sent in the phase; rates and monthly projections use it.
func (p *Phase) Duration() time.Duration { return p.Sending }

// Sent is the generator's counts in the phase.
func (p *Phase) Sent() map[[2]netip.Addr]PairCount {
	out := map[[2]netip.Addr]PairCount{}
	for k, v := range p.End.Sent {
		b := p.Start.Sent[k]
		if d := (PairCount{v.Packets - b.Packets, v.Payload - b.Payload}); d.Packets > 0 {
			out[k] = d
		}
	}
	return out
}

// Server is a flowserver's counters grown in the phase.
func (p *Phase) Server(zone string) metricstest.Samples {
	return p.End.Servers[zone].Minus(p.Start.Servers[zone])
}

// Cost is a costcalc run's counters grown in the phase.
func (p *Phase) Cost(cloud string) metricstest.Samples {
	return p.End.Costs[cloud].Minus(p.Start.Costs[cloud])
}

// RunPhase drives phase n's calls for dur (disrupting the services as asked), then waits until every
// report is in and every costcalc has scraped it, and returns the phase's snapshots.
func (d *Demo) RunPhase(ctx context.Context, n int, dur time.Duration, disrupt []Disruption) (*Phase, error) {
	start, err := d.Snap(ctx)
	if err != nil {
		return nil, err
	}
	calls := d.Model.Calls(n)
	if d.Routing != nil {
		calls = d.Model.RoutedCalls(d.APIClusterIPs)
	}
	d.say("phase %d: %d callers for %s", n, len(calls), dur)
	runErr := make(chan error, 1)
	phaseStart := time.Now()
	pausedBefore := d.Gen.Paused()
	go func() { runErr <- d.Gen.Run(ctx, calls, dur) }()
	for _, x := range disrupt {
		select {
		case <-time.After(time.Until(phaseStart.Add(x.At))):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := d.disrupt(ctx, x); err != nil {
			return nil, err
		}
	}
	ticker := time.NewTicker(15 * time.Second)
	defer ticker.Stop()
wait:
	for {
		select {
		case err := <-runErr:
			if err != nil {
				return nil, fmt.Errorf("traffic of phase %d: %w", n, err)
			}
			break wait
		case <-ticker.C:
			d.say("  phase %d: %s of %s", n, time.Since(phaseStart).Round(time.Second), dur)
		}
	}
	sending := time.Since(phaseStart) - (d.Gen.Paused() - pausedBefore)
	d.say("phase %d: traffic done; waiting for the last reports and scrapes", n)
	if err := d.settle(ctx); err != nil {
		return nil, err
	}
	end, err := d.Snap(ctx)
	if err != nil {
		return nil, err
	}
	d.phases++
	return &Phase{N: n, Start: start, End: end, Calls: calls, Sending: sending}, nil
}

// settle waits until Prometheus has, from the flowservers, every byte the generator sent from each zone
// (or, if bytes are missing, until nothing changes for a while, so the caller sees the difference), then
// until Prometheus has from every costcalc run three more rounds of successful scrapes of the
// flowservers: at least one of them began after the flowservers served their final counters (Prometheus'
// last samples of costcalc and of the flowservers may be a round apart), and Prometheus has what costcalc
// made of it.
func (d *Demo) settle(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	var last string
	stable := 0
	var scraped map[string]float64 // costcalc's successful scrapes when the flowservers were complete
	costScrapes := func(s *Snapshot, c string) float64 {
		return s.Costs[c].Sum("zonetoll_costcalc_scrapes_total", map[string]string{"result": "ok"})
	}
	for time.Now().Before(deadline) {
		s, err := d.Snap(ctx)
		if err != nil {
			return err
		}
		if scraped != nil {
			done := true
			for _, c := range Clouds {
				done = done && costScrapes(s, c) >= scraped[c]+3*float64(len(d.Servers))
			}
			if done {
				return nil
			}
		} else {
			want := Expected(d.Model, s.Sent)
			complete := true
			var state strings.Builder
			for _, z := range d.Model.Zones {
				got := AppBytes(s.Servers[z])
				var w uint64
				for _, v := range want[z] {
					w += v
				}
				fmt.Fprintf(&state, "%s %d/%d ", z, got, w)
				if got < w {
					complete = false
				}
			}
			if state.String() == last {
				stable++
				// Ten seconds without change: on a busy machine an agent can be late by a few seconds, but not ten.
				if stable >= 20 {
					d.say("  Prometheus' flowserver counters stopped growing short of what was sent: %s", state.String())
					complete = true
				}
			} else {
				stable = 0
			}
			last = state.String()
			if complete {
				scraped = map[string]float64{}
				for _, c := range Clouds {
					scraped[c] = costScrapes(s, c)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil
}

// AppBytes is the flowserver's bytes whose source is the application (its namespace or a node).
func AppBytes(sc metricstest.Samples) uint64 {
	var t float64
	for _, s := range sc.Series("zonetoll_traffic_bytes_total", nil) {
		if s.Labels["src_namespace"] != "" || s.Labels["src_kind"] == KindNode {
			t += s.Value
		}
	}
	return uint64(t)
}

func (d *Demo) event(format string, args ...any) {
	e := fmt.Sprintf(format, args...)
	d.Events = append(d.Events, e)
	d.say("%s", e)
}

// Close stops every process by its PID, removes the network namespaces, unmounts the bpffs and removes the
// run directory. It is safe to call more than once and after a failed Start.
func (d *Demo) Close() error {
	var errs []error
	if d.Gen != nil {
		d.Gen.Close()
		d.Gen = nil
	}
	var procs []*Proc
	procs = append(procs, d.Prom)
	for _, c := range Clouds {
		procs = append(procs, d.Costcalcs[c])
	}
	if d.Model != nil {
		for _, n := range d.Model.Nodes {
			procs = append(procs, d.Agents[n.Name])
		}
		for _, z := range d.Model.Zones {
			procs = append(procs, d.Servers[z])
		}
	}
	procs = append(procs, d.Labeler)
	for _, p := range procs {
		if p != nil {
			p.Stop()
		}
	}
	if d.Cluster != nil {
		if err := d.Cluster.Stop(); err != nil {
			errs = append(errs, err)
		}
		d.Cluster = nil
	}
	if d.Model != nil {
		if err := RemoveNetwork(d.Model); err != nil {
			errs = append(errs, err)
		}
	}
	if d.Dir != "" {
		unmountBelow(d.Dir)
		if d.opts.KeepDir {
			d.say("kept %s", d.Dir)
		} else if err := os.RemoveAll(d.Dir); err != nil {
			errs = append(errs, err)
		}
		d.Dir = ""
	}
	return errors.Join(errs...)
}

func writeFile(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Fetch scrapes /metrics of one of the demo's processes (over HTTPS for a flowserver) into flat samples.
func (p *Proc) Fetch(ctx context.Context) (metricstest.Samples, error) {
	fams, err := metricstest.Fetch(ctx, p.Client, p.URL("/metrics"))
	if err != nil {
		return nil, err
	}
	return fams.Samples(), nil
}

// CheckoutBinDir is the directory under the cache where the demo of the checkout at repo keeps the
// binaries it builds (name: "bin" for make demo, another for a test), kept between runs so go build
// relinks only what changed. It is one per checkout because the demo's restarts exec the binary file
// again: a run in another checkout (a git worktree) rebuilding the same path would have them start its
// code instead.
func CheckoutBinDir(cache, repo, name string) string {
	h := sha256.Sum256([]byte(filepath.Clean(repo)))
	return filepath.Join(cache, "zonetoll", "demo", name+"-"+hex.EncodeToString(h[:6]))
}
