// Package app wires the flowagent service: its settings and its Run.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"
	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/agent"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/locals"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/sender"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/tcfollow"
	"github.com/zonetoll/zonetoll/shared/config"
	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/shared/kubeclient/clientset"
	"github.com/zonetoll/zonetoll/shared/report"
	"github.com/zonetoll/zonetoll/shared/servicecmd"
	"github.com/zonetoll/zonetoll/shared/tlsclient"
)

// Config is every setting of flowagent, read from ZONETOLL_* variables.
type Config struct {
	servicecmd.Common
	Kube            kubeclient.Config
	NodeName        string        `split_words:"true" required:"true" desc:"This node's name (in a DaemonSet: fieldRef spec.nodeName)."`
	Zone            string        `desc:"This node's zone; empty means the node's zone label (ZONETOLL_ZONE_LABEL)."`
	ZoneLabel       string        `split_words:"true" default:"topology.kubernetes.io/zone" desc:"Node label that holds the zone."`
	ServerURL       string        `split_words:"true" default:"https://flowserver-{zone}.zonetoll:8080" desc:"Base URL of the flowserver; {zone} is replaced by this node's zone, so reports stay in the zone. https unless ZONETOLL_ALLOW_PLAINTEXT is set."`
	ServerCAFile    string        `split_words:"true" desc:"PEM CA bundle that signs the flowserver's certificate (a mounted ca.crt); re-read when it changes, so a rotated CA needs no restart. Empty uses the system roots."`
	AllowPlaintext  bool          `split_words:"true" desc:"Allow an http:// ZONETOLL_SERVER_URL, which sends the bearer token and the reports in clear text: for local use only (tests, a demo on one machine)."`
	TokenFile       string        `split_words:"true" default:"/var/run/secrets/kubernetes.io/serviceaccount/token" desc:"Service-account token sent as bearer token; re-read before every report, so rotation needs no restart. Empty sends none."`
	Interval        time.Duration `default:"10s" desc:"Time between drains of the kernel's flow map; each drain makes one report window."`
	ReportMaxFlows  int           `split_words:"true" default:"100000" desc:"Flows per report; a window with more is split into several reports."`
	SpoolBytes      int64         `split_words:"true" default:"67108864" desc:"Bound on undelivered reports kept in memory (gzip bytes); beyond it the oldest are dropped and counted."`
	SpoolDir        string        `split_words:"true" desc:"Directory (a hostPath) that keeps a copy of every undelivered report, so a restart resends them with their original identity; empty keeps them in memory only."`
	SendTimeout     time.Duration `split_words:"true" default:"30s" desc:"Time one POST of a report may take."`
	RetryMinBackoff time.Duration `split_words:"true" default:"1s" desc:"First retry delay after a failed POST; doubles per failure."`
	RetryMaxBackoff time.Duration `split_words:"true" default:"1m" desc:"Longest retry delay (and longest Retry-After honoured)."`
	ShutdownFlush   time.Duration `split_words:"true" default:"10s" desc:"On SIGTERM, time for the last drain and for sending what is spooled; keep it below ZONETOLL_HTTP_SHUTDOWN_TIMEOUT."`
	Overlay         bool          `desc:"Set when the CNI encapsulates pod traffic (VXLAN, Geneve, IPIP): node-to-node flows are then skipped as the outer packets of pod flows already reported, at the price of not reporting host-network traffic between nodes."`
	Netns           string        `desc:"Network namespace (path such as /var/run/netns/node1) to attach in; empty means the agent's own. The process stays in its own namespace."`
	BPF             BPF
}

// BPF configures the kernel counter.
type BPF struct {
	MaxFlows         uint32   `split_words:"true" default:"131072" desc:"Capacity of each flow map: distinct address pairs per interval and per address family (IPv4 and IPv6 have maps of their own); packets of pairs beyond it are counted as insert failures."`
	PinDir           string   `split_words:"true" default:"/sys/fs/bpf/zonetoll" desc:"bpffs directory where the maps are pinned, so a restart loses nothing."`
	Mode             string   `default:"auto" oneof:"auto netfilter tc" desc:"Where the program attaches: netfilter POST_ROUTING, tc egress of the interfaces traffic leaves the node through, or auto (netfilter when the kernel has netfilter BPF links, 6.4+, and BTF; else tc)."`
	Priority         int32    `default:"90" desc:"Netfilter hook priority; must be below 100 (source NAT) to see pod addresses."`
	TCInterfaces     []string `split_words:"true" desc:"tc mode: count at egress of exactly these interfaces (followed by name as they come and go) instead of detecting uplinks (default-route devices in any routing table) and overlay devices (vxlan, geneve); empty means detect."`
	TCUplinkPatterns []string `split_words:"true" desc:"tc mode: shell patterns (eth*, ens[0-9]*) of interfaces to count at egress besides the detected ones, for uplinks without a default route; ignored when ZONETOLL_BPF_TC_INTERFACES is set."`
}

func (b BPF) tcRules() tcfollow.Rules {
	return tcfollow.Rules{Interfaces: b.TCInterfaces, Patterns: b.TCUplinkPatterns}
}

func (b BPF) counterConfig() counter.Config {
	return counter.Config{MaxFlows: b.MaxFlows, PinDir: b.PinDir, Mode: counter.Mode(b.Mode), Priority: b.Priority}
}

// Validate checks relations between settings that envconfig cannot.
func (c *Config) Validate() error {
	if err := c.Kube.Validate("ZONETOLL_KUBE_"); err != nil {
		return err
	}
	if c.Interval <= 0 {
		return config.Invalid("ZONETOLL_INTERVAL", c.Interval.String(), "a positive duration")
	}
	if c.ReportMaxFlows < 1 || c.ReportMaxFlows > report.DefaultMaxFlows {
		return config.Invalid("ZONETOLL_REPORT_MAX_FLOWS", fmt.Sprint(c.ReportMaxFlows), fmt.Sprintf("an integer from 1 to %d (the server's default limit)", report.DefaultMaxFlows))
	}
	if c.SpoolBytes < 1<<20 {
		return config.Invalid("ZONETOLL_SPOOL_BYTES", fmt.Sprint(c.SpoolBytes), "at least 1048576 (1 MiB)")
	}
	if c.RetryMinBackoff <= 0 || c.RetryMaxBackoff < c.RetryMinBackoff {
		return config.Invalid("ZONETOLL_RETRY_MAX_BACKOFF", c.RetryMaxBackoff.String(), fmt.Sprintf("a duration of at least ZONETOLL_RETRY_MIN_BACKOFF (%s), which must be positive", c.RetryMinBackoff))
	}
	u, err := serverURL(c.ServerURL, "zone")
	if err != nil {
		return config.Invalid("ZONETOLL_SERVER_URL", c.ServerURL, "an http or https URL, optionally with {zone} ("+err.Error()+")")
	}
	if isPlainHTTP(u) && !c.AllowPlaintext {
		// The token authenticates the agent for an hour and the reports name every flow: a network
		// observer in the zone would read both. Plain HTTP is a choice made on purpose, never a default.
		return config.Invalid("ZONETOLL_SERVER_URL", c.ServerURL, "an https URL: over http the agent's bearer token and its reports cross the network in clear text "+
			"(set ZONETOLL_SERVER_CA_FILE to the CA that signs the flowserver's certificate), or ZONETOLL_ALLOW_PLAINTEXT=true for local use")
	}
	if err := c.BPF.counterConfig().Validate(); err != nil {
		return config.Invalid("ZONETOLL_BPF_PRIORITY", fmt.Sprint(c.BPF.Priority), err.Error())
	}
	if err := c.BPF.tcRules().Validate(); err != nil {
		return config.Invalid("ZONETOLL_BPF_TC_UPLINK_PATTERNS", strings.Join(c.BPF.TCUplinkPatterns, ","), "shell patterns of interface names ("+err.Error()+")")
	}
	if c.ShutdownFlush <= 0 || c.ShutdownFlush >= c.HTTP.ShutdownTimeout {
		return config.Invalid("ZONETOLL_SHUTDOWN_FLUSH", c.ShutdownFlush.String(), fmt.Sprintf("a positive duration below ZONETOLL_HTTP_SHUTDOWN_TIMEOUT (%s)", c.HTTP.ShutdownTimeout))
	}
	return nil
}

// serverURL fills the zone into the URL template and checks the result.
func serverURL(template, zone string) (string, error) {
	s := strings.ReplaceAll(template, "{zone}", zone)
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q has no http(s) scheme and host", s)
	}
	return s, nil
}

// isPlainHTTP says whether a URL serverURL accepted is http (any case) rather than https.
func isPlainHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "http"
}

// Spec is the flowagent command line.
func Spec() servicecmd.Spec[Config] {
	return servicecmd.Spec[Config]{
		Name:       "flowagent",
		Usage:      "counts the bytes this node sends per address pair with eBPF and reports them to its zone's flowserver",
		Run:        Run,
		Kubernetes: true,
		Commands:   []*cli.Command{uninstallCommand()},
	}
}

// Run loads and attaches the counter, learns the node's addresses and zone, and reports every
// interval until ctx is done; then it drains and sends once more.
func Run(ctx context.Context, cfg *Config, env servicecmd.Env) (err error) {
	log := env.Logger
	var ready atomic.Bool
	env.Server.AddReadinessCheck("reporting", func(context.Context) error {
		if !ready.Load() {
			return errors.New("counter not attached or node addresses not known yet")
		}
		return nil
	})
	env.Started()

	kernel, feats, err := checkKernel(counter.Mode(cfg.BPF.Mode))
	if err != nil {
		return err
	}
	ctr, err := counter.Load(ctx, cfg.BPF.counterConfig(), log)
	if err != nil {
		return fmt.Errorf("loading the BPF counter on kernel %s (%s): %w", kernel, feats, err)
	}
	defer ctr.Close()
	if err := env.Registry.Register(newRunStatsCollector(ctr)); err != nil {
		return fmt.Errorf("registering the program run-time metrics: %w", err)
	}
	follower, err := attach(ctr, cfg, env.Registry, log)
	if err != nil {
		return err
	}
	log.Info("counting", startReport(cfg, ctr, kernel, feats, follower)...)
	if follower != nil {
		// A follower that can no longer hear link events would stop following silently: end the
		// agent instead, so the restart says why.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		defer func() {
			// Stopped by the follower's failure rather than by a signal: say why.
			if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
				err = cause
			}
		}()
		followCtx, stopFollowing := context.WithCancel(context.WithoutCancel(ctx))
		followed := make(chan struct{})
		go func() {
			defer close(followed)
			if err := follower.Run(followCtx); err != nil {
				cancel(fmt.Errorf("following interfaces in tc mode: %w", err))
			}
		}()
		// The follower stops only after the final drain, so interfaces keep being followed to the end.
		defer func() { stopFollowing(); <-followed }()
	}

	rc, err := kubeclient.RESTConfig(env.Kubeconfig, cfg.Kube, env.Info.UserAgent())
	if err != nil {
		return err
	}
	cs, err := clientset.New(rc)
	if err != nil {
		return err
	}
	// Pods that vanished stay local for two intervals: their last traffic is drained after they go.
	set := locals.NewSet(2 * cfg.Interval)
	var nodeSet *locals.Set
	if cfg.Overlay {
		nodeSet = locals.NewSet(2 * cfg.Interval)
	}
	watch, err := locals.NewWatcher(cs, cfg.NodeName, set, nodeSet, log)
	if err != nil {
		return err
	}
	defer watch.Shutdown()
	// Until the informers synced nothing is drained: the pinned maps keep counting meanwhile.
	if err := watch.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped during start-up: nothing was drained, the pinned maps keep the counts
		}
		return fmt.Errorf("learning this node's addresses: %w", err)
	}
	zone := cfg.Zone
	if zone == "" {
		zone = watch.Node().Labels[cfg.ZoneLabel]
	}
	if zone == "" {
		return fmt.Errorf("node %s has no %s label and ZONETOLL_ZONE is empty: cannot pick the zone's flowserver", cfg.NodeName, cfg.ZoneLabel)
	}
	target, err := serverURL(cfg.ServerURL, zone)
	if err != nil {
		return fmt.Errorf("building the flowserver URL for zone %s: %w", zone, err)
	}

	var nodes agent.Locals
	if nodeSet != nil {
		nodes = nodeSet
	}
	return runReporting(ctx, cfg, ctr, set, nodes, target, env, &ready, log.With("zone", zone, "flowserver", target))
}

// attach attaches the counter: at netfilter POST_ROUTING, or in tc mode at egress of the
// interfaces a follower picks and keeps following (returned, not yet running).
func attach(ctr *counter.Counter, cfg *Config, reg prometheus.Registerer, log *slog.Logger) (*tcfollow.Follower, error) {
	if ctr.Mode() == counter.ModeNetfilter {
		if err := ctr.AttachNetfilter(cfg.Netns); err != nil {
			return nil, fmt.Errorf("attaching at netfilter POST_ROUTING: %w", err)
		}
		return nil, nil
	}
	f, err := tcfollow.Start(cfg.Netns, cfg.BPF.tcRules(), ctr, reg, log)
	if err != nil {
		how := "tcx links (Linux 6.6+)"
		if !ctr.TCX() {
			how = "a clsact qdisc and a bpf filter (CONFIG_NET_SCH_INGRESS, CONFIG_NET_CLS_BPF)"
		}
		return nil, fmt.Errorf("attaching in tc mode with %s on kernel %s: %w", how, kernelRelease(), err)
	}
	if len(f.Attached()) == 0 {
		log.Warn("tc mode: no interface to count on yet (no default route, overlay device or listed name); counting starts when one appears")
	}
	return f, nil
}

// runReporting runs the agent loop and the sender until ctx is done, then drains once more and flushes.
func runReporting(ctx context.Context, cfg *Config, d agent.Drainer, set, nodes agent.Locals, target string, env servicecmd.Env, ready *atomic.Bool, log *slog.Logger) error {
	tr, err := tlsclient.New(cfg.ServerCAFile, "ZONETOLL_SERVER_CA_FILE", log)
	if err != nil {
		return fmt.Errorf("trusting the flowserver's CA: %w", err)
	}
	if cfg.ServerCAFile != "" && isPlainHTTP(target) {
		log.Warn("ZONETOLL_SERVER_CA_FILE is set but ZONETOLL_SERVER_URL is plain http: the CA is not used")
	}
	snd, err := sender.New(sender.Config{
		URL: target, TokenFile: cfg.TokenFile, SpoolBytes: cfg.SpoolBytes, Dir: cfg.SpoolDir,
		MinBackoff: cfg.RetryMinBackoff, MaxBackoff: cfg.RetryMaxBackoff, Timeout: cfg.SendTimeout, Client: &http.Client{Transport: tr, Timeout: cfg.SendTimeout},
	}, env.Registry, log)
	if err != nil {
		return err
	}
	ag, err := agent.New(agent.Config{
		Node: cfg.NodeName, Interval: cfg.Interval, MaxFlowsPerReport: cfg.ReportMaxFlows, FinalTimeout: cfg.ShutdownFlush / 2,
		Nodes: nodes,
	}, d, set, snd, env.Registry, log)
	if err != nil {
		return err
	}
	sendCtx, stopSending := context.WithCancel(context.WithoutCancel(ctx))
	sent := make(chan struct{})
	go func() { snd.Run(sendCtx); close(sent) }()
	ready.Store(true)
	log.Info("reporting", "interval", cfg.Interval, "boot_id", fmt.Sprintf("%x", ag.BootID))

	runErr := ag.Run(ctx) // returns after the final drain
	ready.Store(false)
	stopSending()
	<-sent
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownFlush/2)
	defer cancel()
	if err := snd.Flush(flushCtx); err != nil {
		log.Error("reports not delivered at shutdown", "error", err)
		return errors.Join(runErr, err)
	}
	return runErr
}
