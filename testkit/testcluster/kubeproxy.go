package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/zonetoll/zonetoll/shared/netns"
	childproc "github.com/zonetoll/zonetoll/testkit/process"
)

// KubeProxyOptions configures StartKubeProxy.
type KubeProxyOptions struct {
	// NodeName is the Node kube-proxy runs as (--hostname-override): it
	// reads that Node's zone label and routes by the zone hints for it.
	NodeName string
	// Netns names the network namespace (in /run/netns, made by the caller
	// with `ip netns add`) kube-proxy runs and writes its rules in. Required:
	// kube-proxy is never started in the caller's own namespace, so it
	// cannot touch the host's nftables ruleset.
	Netns string
	// Kubeconfig is the identity kube-proxy uses; empty means the cluster's
	// admin kubeconfig. Its server must be the cluster's own address
	// (https://127.0.0.1:<port>): inside the namespace that address is a relay
	// to the API server (relay.go).
	Kubeconfig string
	// Mode is --proxy-mode; empty means nftables.
	Mode string
	// ExtraArgs are appended to the defaults (the last of a flag wins).
	ExtraArgs []string
}

// KubeProxy is one kube-proxy process in a network namespace.
type KubeProxy struct {
	NodeName, Netns string
	// LogPath is its log, kube-proxy-<node>.log in the cluster's LogDir.
	LogPath string
	p       *childproc.Process
}

var netnsName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// StartKubeProxy starts kube-proxy of the cluster's release (built by
// BuildRoutingVersion) inside a network namespace, through `ip netns exec`,
// so every rule it writes is that namespace's. It returns once kube-proxy has
// written its nftables tables there (its first sync); the caller waits for
// the rules of a Service it cares about (Ruleset). Stop (or Cluster.Stop)
// ends it; its rules go with the namespace.
//
// Host-wide settings are left alone: conntrack's global table size and hash
// size (--conntrack-max-per-core=0) and its timeouts (0: keep the kernel's).
// No --cluster-cidr is given, so kube-proxy masquerades nothing: a Service's
// endpoint sees the client pod's own address, as with a native-routing CNI.
func (c *Cluster) StartKubeProxy(ctx context.Context, opts KubeProxyOptions) (*KubeProxy, error) {
	if opts.NodeName == "" {
		return nil, errors.New("starting kube-proxy: NodeName is required")
	}
	if !netnsName.MatchString(opts.Netns) {
		return nil, fmt.Errorf("starting kube-proxy for node %s: Netns %q is not the name of a namespace in %s (kube-proxy never runs in the caller's own namespace)", opts.NodeName, opts.Netns, netns.Dir)
	}
	if _, err := os.Stat(filepath.Join(netns.Dir, opts.Netns)); err != nil {
		return nil, fmt.Errorf("starting kube-proxy for node %s: network namespace %s: %w", opts.NodeName, opts.Netns, err)
	}
	bin, err := c.routingBinary(KubeProxyBinary)
	if err != nil {
		return nil, err
	}
	ipBin, err := exec.LookPath("ip")
	if err != nil {
		return nil, fmt.Errorf("starting kube-proxy: ip (Debian's iproute2) runs it in its namespace: %w", err)
	}
	mode := opts.Mode
	if mode == "" {
		mode = "nftables"
	}
	if mode == "nftables" {
		if _, err := exec.LookPath("nft"); err != nil {
			return nil, fmt.Errorf("starting kube-proxy in nftables mode: it runs nft (Debian's nftables; hack/setup.sh installs it): %w", err)
		}
	}
	kubeconfig := opts.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = c.Kubeconfig
	}
	args := append([]string{
		"netns", "exec", opts.Netns, bin,
		"--kubeconfig=" + kubeconfig,
		"--hostname-override=" + opts.NodeName,
		"--proxy-mode=" + mode,
		// Loopback of the node's namespace: nothing outside it can reach them.
		"--healthz-bind-address=127.0.0.1:10256",
		"--metrics-bind-address=127.0.0.1:10249",
		// nf_conntrack_max and the module's hashsize are global to the host.
		"--conntrack-max-per-core=0",
		"--conntrack-min=0",
		"--conntrack-tcp-timeout-established=0",
		"--conntrack-tcp-timeout-close-wait=0",
		"--oom-score-adj=0",
		"--profiling=false",
		"--v=2",
	}, opts.ExtraArgs...)
	logPath := filepath.Join(c.LogDir, "kube-proxy-"+opts.NodeName+".log")
	// The API server listens on the host's loopback, which the namespace cannot reach.
	apiAddr := strings.TrimPrefix(c.apiserverHost, "https://")
	relay, err := startAPIRelay(filepath.Join(netns.Dir, opts.Netns), apiAddr, apiAddr)
	if err != nil {
		return nil, err
	}
	c.routingMu.Lock()
	c.relays = append(c.relays, relay)
	p, err := startProcess("kube-proxy "+opts.NodeName, ipBin, logPath, args)
	if err == nil {
		c.kubeProxies = append(c.kubeProxies, p)
	}
	c.routingMu.Unlock()
	if err != nil {
		return nil, err
	}
	kp := &KubeProxy{NodeName: opts.NodeName, Netns: opts.Netns, LogPath: logPath, p: p}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	err = c.waitHealthy(ctx, p, func(ctx context.Context) error {
		out, err := kp.Ruleset(ctx)
		if err != nil {
			return err
		}
		if !strings.Contains(out, "table ip kube-proxy") {
			return errors.New("no kube-proxy table yet")
		}
		return nil
	})
	if err != nil {
		kp.Stop()
		return nil, fmt.Errorf("waiting for kube-proxy of node %s to write its rules: %w\n%s", opts.NodeName, err, kp.LogTail())
	}
	c.log.Info("kube-proxy ready", "node", opts.NodeName, "netns", opts.Netns, "pid", p.PID())
	return kp, nil
}

// Ruleset is `nft list ruleset` in kube-proxy's namespace.
func (kp *KubeProxy) Ruleset(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", kp.Netns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nft list ruleset in %s: %w: %s", kp.Netns, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// PID is kube-proxy's process id (ip netns exec execs it, keeping the pid).
func (kp *KubeProxy) PID() int { return kp.p.PID() }

// Running reports whether the process is alive.
func (kp *KubeProxy) Running() bool { return kp.p.Running() }

// Stop ends kube-proxy (SIGTERM, SIGKILL after 15 s). Its rules stay in its
// namespace until that is deleted.
func (kp *KubeProxy) Stop() error { return stopProcess(kp.p) }

// LogTail is the end of its log.
func (kp *KubeProxy) LogTail() string {
	data, err := os.ReadFile(kp.LogPath)
	if err != nil {
		return fmt.Sprintf("--- %s: %v", kp.LogPath, err)
	}
	return fmt.Sprintf("--- last %d lines of %s:\n%s", logTailLines, kp.LogPath, tail(string(data), logTailLines))
}
