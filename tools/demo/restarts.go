package demo

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zonetoll/zonetoll/testkit/testcluster"
	"github.com/zonetoll/zonetoll/tools/overlaycheck"
)

// Restarts of phase 1: every component of the pipeline is restarted twice while the application sends,
// and the application never pauses. Nothing the demo does keeps a dead process's counters: what counts is
// what Prometheus scraped from the processes, which is what a user reads (promread.go).

// Disruption is something done to the services while traffic flows.
type Disruption struct {
	At     time.Duration // into the phase
	What   string        // "restart-agent", "restart-flowserver" or "restart-costcalc"
	Node   string        // agent's node
	Zone   string        // flowserver's zone
	Cloud  string        // costcalc run's cloud
	Signal string        // "SIGTERM" (a rollout, a drain) or "SIGKILL" (a crash, an OOM kill)
}

// Restart is one restart that happened: who, how, and what went on meanwhile.
type Restart struct {
	Component string // flowagent, flowserver or costcalc
	Of        string // its node, zone or cloud
	Signal    string
	OldPID    int
	NewPID    int
	Exit      int       // the old process's exit code (-1: ended by the signal)
	Began     time.Time // the signal
	Ready     time.Time // the new process answered its readiness check
	// Sent is the datagrams the application sent from Began to Ready whose bytes pass through the
	// restarted component: the node's pods and the node (an agent), the zone's nodes (a flowserver),
	// everything (a costcalc run).
	Sent uint64
	// Retries is, for a flowserver, how many reports its zone's agents failed to deliver from Began to
	// Ready (network errors and 5xx answers, all retried).
	Retries float64
}

// Restart phases, as fractions of the phase: each is over well before the next (a flowserver restart
// takes its shutdown grace, FlowserverDown and its start), and each flowserver life counts for longer than
// its restart takes, so the next life's first samples stay below the last one's.
func (d *Demo) Disruptions(phase time.Duration) []Disruption {
	m := d.Model
	at := func(f float64) time.Duration { return time.Duration(f * float64(phase)) }
	return []Disruption{
		{At: at(0.15), What: "restart-agent", Node: m.Pod("api", m.Zones[0]).Node.Name, Signal: "SIGKILL"},
		{At: at(0.30), What: "restart-flowserver", Zone: m.Zones[1], Signal: "SIGTERM"},
		{At: at(0.45), What: "restart-costcalc", Cloud: Clouds[0], Signal: "SIGTERM"},
		{At: at(0.52), What: "restart-agent", Node: m.Pod("frontend", m.Zones[2]).Node.Name, Signal: "SIGTERM"},
		{At: at(0.65), What: "restart-flowserver", Zone: m.Zones[1], Signal: "SIGTERM"},
		{At: at(0.85), What: "restart-costcalc", Cloud: Clouds[0], Signal: "SIGKILL"},
	}
}

// FlowserverDown is how long a restarted flowserver stays down after its old process exited, in report
// intervals: its agents keep their reports and retry meanwhile.
const FlowserverDown = 3

func (d *Demo) disrupt(ctx context.Context, x Disruption) error {
	if x.Signal != "SIGTERM" && x.Signal != "SIGKILL" {
		return fmt.Errorf("disruption %s: signal %q, want SIGTERM or SIGKILL", x.What, x.Signal)
	}
	switch x.What {
	case "restart-agent":
		n := d.Model.NodeByName(x.Node)
		if n == nil || d.Agents[x.Node] == nil {
			return fmt.Errorf("disruption %s: no node %q", x.What, x.Node)
		}
		local := map[netip.Addr]bool{n.IPv4: true, n.IPv6: true}
		for _, pod := range d.Model.Pods {
			if pod.Node == n {
				local[pod.IPv4], local[pod.IPv6] = true, true
			}
		}
		return d.restart(ctx, "flowagent", x.Node, d.Agents[x.Node], x.Signal, 0, func(src netip.Addr) bool { return local[src] }, nil)
	case "restart-flowserver":
		if d.Servers[x.Zone] == nil {
			return fmt.Errorf("disruption %s: no zone %q", x.What, x.Zone)
		}
		nodes := d.Model.NodesInZone(x.Zone)
		inZone := func(src netip.Addr) bool {
			p := d.Model.ByAddr[src]
			return p.Node != nil && p.Node.Zone == x.Zone
		}
		return d.restart(ctx, "flowserver", x.Zone, d.Servers[x.Zone], x.Signal, FlowserverDown*d.opts.Interval, inZone, func() (float64, error) {
			var failed float64
			for _, n := range nodes {
				a := d.Agents[n.Name]
				sc, err := a.Fetch(ctx)
				if err != nil {
					return 0, fmt.Errorf("scraping the agent of %s: %w", n.Name, err)
				}
				for _, r := range []string{"network_error", "server_error"} {
					failed += sc.Sum("zonetoll_flowagent_reports_sent_total", map[string]string{"result": r})
				}
			}
			return failed, nil
		})
	case "restart-costcalc":
		if d.Costcalcs[x.Cloud] == nil {
			return fmt.Errorf("disruption %s: no costcalc run for %q", x.What, x.Cloud)
		}
		return d.restart(ctx, "costcalc", x.Cloud, d.Costcalcs[x.Cloud], x.Signal, 0, func(netip.Addr) bool { return true }, nil)
	}
	return fmt.Errorf("unknown disruption %q", x.What)
}

// restart ends p with signal (SIGTERM: waits for its own shutdown, as a kubelet does), keeps it down for
// down, starts it again with the same settings, address and directories, and records the Restart. sent
// picks the datagrams that count as traffic through p; failed, if set, is read before and after.
func (d *Demo) restart(ctx context.Context, component, of string, p *Proc, signal string, down time.Duration,
	sent func(src netip.Addr) bool, failed func() (float64, error)) error {
	count := func() uint64 {
		var pkts uint64
		for k, c := range d.Gen.Ledger.Snapshot() {
			if sent(k[0]) {
				pkts += c.Packets
			}
		}
		return pkts
	}
	r := Restart{Component: component, Of: of, Signal: signal, OldPID: p.PID()}
	var failedBefore float64
	if failed != nil {
		var err error
		if failedBefore, err = failed(); err != nil {
			return err
		}
	}
	before := count()
	r.Began = time.Now()
	if signal == "SIGKILL" {
		if err := p.Kill(); err != nil {
			return err
		}
		r.Exit = -1
	} else {
		r.Exit = p.Stop()
	}
	exited := time.Now()
	select {
	case <-time.After(down):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := p.Start(ctx); err != nil {
		return fmt.Errorf("restarting %s-%s: %w", component, of, err)
	}
	r.Ready, r.NewPID = time.Now(), p.PID()
	r.Sent = count() - before
	if failed != nil {
		after, err := failed()
		if err != nil {
			return err
		}
		r.Retries = after - failedBefore
	}
	d.Restarts = append(d.Restarts, r)
	msg := fmt.Sprintf("%s %s-%s (pid %d, exit %d after %s), started it again (pid %d) %s later; meanwhile the application sent %d datagrams through it",
		signal, component, of, r.OldPID, r.Exit, exited.Sub(r.Began).Round(time.Millisecond), r.NewPID, r.Ready.Sub(r.Began).Round(time.Millisecond), r.Sent)
	if failed != nil {
		msg += fmt.Sprintf(" and its agents failed %.0f sends (kept and retried)", r.Retries)
	}
	d.event("%s", msg)
	return nil
}

// Scrapes and the flowserver's shutdown: Prometheus and every costcalc run scrape each flowserver every
// ScrapeInterval, and a flowserver told to stop keeps serving /metrics for MetricsGrace after it stopped
// taking reports, so that at least one scrape of each starts after its last report was applied and ends
// before it exits (ScrapeInterval + ScrapeTimeout would do on an idle machine; the demo's is not).
const (
	ScrapeInterval = time.Second
	ScrapeTimeout  = 900 * time.Millisecond
	MetricsGrace   = 3 * ScrapeInterval
	// MetricsGraceSetting is the flowserver's setting for it.
	MetricsGraceSetting = "ZONETOLL_SHUTDOWN_METRICS_GRACE"
)

// promDuration writes d as Prometheus' configuration reads a duration (whole milliseconds, no "1m0s").
func promDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

// DedupeConfigMap is the flowservers' ZONETOLL_DEDUPE_CONFIG_MAP, as the manifests set it: each zone's
// server keeps its dedupe marks (the last report sequence applied per agent process) in its own ConfigMap,
// so a report retried across a restart is never counted twice.
const DedupeConfigMap = "flowserver-dedupe-{zone}"

// dedupeRules creates what each zone's folder of an overlay makes from base/flowserver/zone for the
// marks — the empty ConfigMap flowserver-dedupe-<zone> — and returns the rules of that folder's Role with
// the zone's name suffix, which the flowserver's account gets beside base/flowserver's.
func dedupeRules(ctx context.Context, c *testcluster.Cluster, repo string, zones []string) ([]rbacv1.PolicyRule, error) {
	rules, _, err := overlaycheck.Rules(filepath.Join(repo, "kustomize", "base", "flowserver", "zone"))
	if err != nil {
		return nil, fmt.Errorf("reading the RBAC of the flowserver's zone manifests: %w", err)
	}
	var out []rbacv1.PolicyRule
	for _, z := range zones {
		for _, r := range rules {
			r = *r.DeepCopy()
			for i := range r.ResourceNames {
				r.ResourceNames[i] += "-" + z
			}
			out = append(out, r)
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: strings.ReplaceAll(DedupeConfigMap, "{zone}", z), Namespace: ToolNamespace}}
		if _, err := c.Client.CoreV1().ConfigMaps(ToolNamespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return nil, fmt.Errorf("creating ConfigMap %s/%s: %w", ToolNamespace, cm.Name, err)
		}
	}
	return out, nil
}
