// Package testcluster runs a real kube-apiserver and etcd on loopback for
// tests and the demo. There is no kubelet, scheduler or controller manager:
// tests create Nodes and bound Pods through the API (see the helpers in
// objects.go), and everything the apiserver itself does — RBAC, TokenRequest,
// TokenReview, watches, field selectors, dry-run — behaves as in production.
package testcluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/zonetoll/zonetoll/testkit/freeport"
	childproc "github.com/zonetoll/zonetoll/testkit/process"
)

// ServiceClusterIPRange is the default service range: inside 198.18.0.0/15
// (benchmarking space, never routed) and at its top end, away from the
// addresses tests and the demo give pods and nodes.
const ServiceClusterIPRange = "198.19.240.0/20"

// AdminUser is the user of Cluster.Config; it is in system:masters.
const AdminUser = "zonetoll-admin"

// ServiceAccountIssuer is the issuer (and default audience) of tokens.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// logTailLines is how much of each log a failure shows.
const logTailLines = 40

// Options configures Start. The zero value is a working cluster.
type Options struct {
	// Version is the Kubernetes release to run (ResolveVersion: v1.36.3,
	// oldest, newest); empty means Version(), i.e.
	// $ZONETOLL_TESTCLUSTER_KUBERNETES_VERSION or KubernetesVersion. Start
	// checks that the server reports it.
	Version string
	// BinDir holds kube-apiserver, etcd and kubectl; empty means the cache
	// dir of Version (BinDirFor).
	BinDir string
	// LogDir receives etcd.log and kube-apiserver.log and is kept after Stop.
	// Empty means the cluster's own temp dir.
	LogDir string
	// KeepDir keeps the cluster's temp dir (data, certs, kubeconfig, logs)
	// after Stop, for debugging.
	KeepDir bool
	// ExtraAPIServerArgs are appended to the defaults; for single-valued
	// flags the last one wins, so these override (e.g.
	// --service-cluster-ip-range, --audit-policy-file).
	ExtraAPIServerArgs []string
	// ExtraEtcdArgs are appended to etcd's defaults.
	ExtraEtcdArgs []string
	// PodTopologyLabels leaves kube-apiserver's PodTopologyLabels admission
	// plugin on, as it is by default from Kubernetes 1.35: pods bound to a
	// node get the node's topology.kubernetes.io/zone and region labels from
	// the API server itself. Off by default here, so tests of zonelabeler see
	// what it writes and not what the API server wrote.
	PodTopologyLabels bool
	// StartTimeout bounds start-to-ready; default 2 minutes (the machine
	// may be busy compiling).
	StartTimeout time.Duration
	// Logger receives lifecycle lines; nil discards them.
	Logger *slog.Logger
}

// Cluster is a running kube-apiserver with its etcd.
type Cluster struct {
	// Config is an admin (system:masters) config with client-side rate
	// limiting off. Copy it before changing it.
	Config *rest.Config
	// Client is a clientset for Config.
	Client *kubernetes.Clientset
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string
	// Dir is the cluster's temp dir (data, certs, kubeconfig, logs).
	Dir string
	// LogDir holds etcd.log and kube-apiserver.log.
	LogDir string
	// EtcdURL is etcd's client URL.
	EtcdURL string
	// Version is the release the server reports (its gitVersion).
	Version string
	// BinDir holds the binaries the cluster runs, and the kubectl of the
	// same release (Kubectl).
	BinDir string

	opts      Options
	log       *slog.Logger
	etcd      *childproc.Process
	apiserver *childproc.Process
	// What RestartAPIServer needs to start the same kube-apiserver again.
	apiserverBin, apiserverHost, adminToken string
	apiserverArgs                           []string
	restartMu                               sync.Mutex

	// The routing parts (controllermanager.go, kubeproxy.go), started on request.
	routingMu         sync.Mutex
	controllerManager *childproc.Process
	kubeProxies       []*childproc.Process
	relays            []*apiRelay // the API server's address inside kube-proxies' namespaces

	stopOnce sync.Once
	stopErr  error
}

// Start starts etcd and kube-apiserver on free loopback ports with fresh data
// and returns once /readyz answers ok. On error nothing is left running and
// the error carries the end of both logs.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	version := opts.Version
	if version == "" {
		var err error
		if version, err = Version(); err != nil {
			return nil, err
		}
	} else {
		var err error
		if version, err = ResolveVersion(version); err != nil {
			return nil, err
		}
	}
	opts.Version = version
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = BinDirFor(version); err != nil {
			return nil, err
		}
	}
	opts.BinDir = binDir
	apiserverBin := filepath.Join(binDir, APIServerBinary)
	etcdBin := filepath.Join(binDir, EtcdBinary)
	for _, bin := range []string{apiserverBin, etcdBin} {
		if err := checkExecutable(bin); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%s %s not found in %s: %s", filepath.Base(bin), version, binDir, buildHint(version))
			}
			return nil, fmt.Errorf("%s in %s is unusable (%v): %s", filepath.Base(bin), binDir, err, buildHint(version))
		}
	}

	ctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()

	// Free ports are found by binding :0 and closing, so another cluster
	// starting at the same moment can take one first; retry on a bind clash.
	var lastErr error
	for attempt := 1; attempt <= 3; attempt++ {
		c, err := start(ctx, opts, log, apiserverBin, etcdBin)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if !errors.Is(err, errPortClash) || ctx.Err() != nil {
			break
		}
		log.Info("port clash while starting test cluster, retrying", "attempt", attempt)
	}
	return nil, lastErr
}

var errPortClash = errors.New("a port was taken by another process")

func start(ctx context.Context, opts Options, log *slog.Logger, apiserverBin, etcdBin string) (_ *Cluster, err error) {
	dir, err := os.MkdirTemp("", "zonetoll-testcluster-")
	if err != nil {
		return nil, fmt.Errorf("creating cluster dir: %w", err)
	}
	c := &Cluster{Dir: dir, LogDir: opts.LogDir, BinDir: opts.BinDir, opts: opts, log: log}
	if c.LogDir == "" {
		c.LogDir = dir
	}
	defer func() {
		if err != nil {
			tails := c.LogTails()
			c.Stop()
			err = fmt.Errorf("%w\n%s", err, tails)
		}
	}()
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return c, fmt.Errorf("creating log dir: %w", err)
	}
	ports, err := freeport.Ports(3)
	if err != nil {
		return c, err
	}
	etcdClientPort, etcdPeerPort, apiPort := ports[0], ports[1], ports[2]

	// etcd.
	c.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(etcdClientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeerPort)
	etcdArgs := append([]string{
		"--name=default",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + c.EtcdURL,
		"--advertise-client-urls=" + c.EtcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL,
		// Throwaway data: durability buys nothing and costs seconds.
		"--unsafe-no-fsync",
		"--log-level=warn",
	}, opts.ExtraEtcdArgs...)
	c.etcd, err = startProcess("etcd", etcdBin, filepath.Join(c.LogDir, "etcd.log"), etcdArgs)
	if err != nil {
		return c, err
	}
	if err := c.waitHealthy(ctx, c.etcd, etcdHealthy(c.EtcdURL)); err != nil {
		return c, fmt.Errorf("waiting for etcd: %w", err)
	}

	// kube-apiserver.
	adminToken, err := randomHex(24)
	if err != nil {
		return c, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return c, err
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, []byte(fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", adminToken, AdminUser, AdminUser)), 0o600); err != nil {
		return c, fmt.Errorf("writing token file: %w", err)
	}
	certDir := filepath.Join(dir, "certs")
	// No token controller creates the `default` service account, so the
	// ServiceAccount admission plugin would reject every pod.
	disabled := "ServiceAccount"
	if !opts.PodTopologyLabels {
		disabled += ",PodTopologyLabels"
	}
	apiArgs := append([]string{
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + certDir,
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--disable-admission-plugins=" + disabled,
		"--allow-privileged=true",
		// The lease/endpoint reconciler loops on errors about the loopback
		// advertise address; nothing here needs the kubernetes Endpoints.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}, opts.ExtraAPIServerArgs...)
	host := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.apiserverBin, c.apiserverArgs, c.apiserverHost, c.adminToken = apiserverBin, apiArgs, host, adminToken
	if err := c.startAPIServer(ctx); err != nil {
		return c, err
	}

	// The serving cert is self-signed at start-up; the file holds the cert
	// and its CA, which is what clients need to verify it.
	caData, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return c, fmt.Errorf("reading the apiserver's serving cert: %w", err)
	}
	c.Config = &rest.Config{
		Host:            host,
		BearerToken:     adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: caData},
		QPS:             -1, // tests create thousands of objects; the server has its own limits.
		UserAgent:       "zonetoll-testcluster",
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return c, fmt.Errorf("creating admin clientset: %w", err)
	}
	info, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		return c, fmt.Errorf("checking the admin config against the server: %w", err)
	}
	// A bin dir given by hand (or $ZONETOLL_TESTCLUSTER_BIN_DIR) may hold
	// another release than the one asked for; a test would then prove the
	// wrong thing.
	if info.GitVersion != opts.Version {
		return c, fmt.Errorf("kube-apiserver in %s reports %s, want %s", opts.BinDir, info.GitVersion, opts.Version)
	}
	c.Version = info.GitVersion
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := WriteKubeconfig(c.Kubeconfig, c.Config); err != nil {
		return c, err
	}
	log.Info("test cluster ready", "host", host, "dir", dir, "kubeconfig", c.Kubeconfig)
	return c, nil
}

func (c *Cluster) startAPIServer(ctx context.Context) error {
	p, err := startProcess("kube-apiserver", c.apiserverBin, filepath.Join(c.LogDir, "kube-apiserver.log"), c.apiserverArgs)
	if err != nil {
		return err
	}
	c.apiserver = p
	if err := c.waitHealthy(ctx, c.apiserver, apiserverReady(c.apiserverHost, c.adminToken)); err != nil {
		return fmt.Errorf("waiting for kube-apiserver /readyz: %w", err)
	}
	return nil
}

// RestartAPIServer stops kube-apiserver, keeps it down for downtime, then starts it again on the same
// port with the same certificates and etcd data, and returns once /readyz answers ok. Clients see what
// they would in an API server outage: refused connections, then a server with every object still there.
func (c *Cluster) RestartAPIServer(ctx context.Context, downtime time.Duration) error {
	c.restartMu.Lock()
	defer c.restartMu.Unlock()
	if err := stopProcess(c.apiserver); err != nil {
		return fmt.Errorf("stopping kube-apiserver: %w", err)
	}
	c.log.Info("kube-apiserver stopped", "downtime", downtime)
	select {
	case <-time.After(downtime):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.startAPIServer(ctx); err != nil {
		return fmt.Errorf("restarting kube-apiserver: %w", err)
	}
	c.log.Info("kube-apiserver restarted")
	return nil
}

// Kubectl returns the path of the kubectl built from the same release as the
// server (build.go), so a test needs no kubectl on the machine.
func (c *Cluster) Kubectl() string { return filepath.Join(c.BinDir, KubectlBinary) }

// Stop stops the apiserver, then etcd (the other order makes the apiserver
// hang on SIGTERM for a minute), and removes the cluster's dir unless KeepDir.
// It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		// The API server's clients first: stopping it under them only makes them log.
		c.routingMu.Lock()
		procs := append(append([]*childproc.Process{}, c.kubeProxies...), c.controllerManager, c.apiserver, c.etcd)
		c.routingMu.Unlock()
		for _, p := range procs {
			if p == nil {
				continue
			}
			if err := stopProcess(p); err != nil {
				errs = append(errs, err)
			}
		}
		c.routingMu.Lock()
		for _, r := range c.relays {
			if err := r.close(); err != nil {
				errs = append(errs, err)
			}
		}
		c.relays = nil
		c.routingMu.Unlock()
		if !c.opts.KeepDir {
			if err := os.RemoveAll(c.Dir); err != nil {
				errs = append(errs, fmt.Errorf("removing cluster dir: %w", err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// PIDs returns the process ids of kube-apiserver and etcd.
func (c *Cluster) PIDs() (apiserver, etcd int) {
	if c.apiserver != nil {
		apiserver = c.apiserver.PID()
	}
	if c.etcd != nil {
		etcd = c.etcd.PID()
	}
	return apiserver, etcd
}

// LogTails returns the last lines of both logs, for failure messages.
func (c *Cluster) LogTails() string {
	var sb strings.Builder
	for _, name := range []string{"etcd.log", "kube-apiserver.log", "kube-controller-manager.log"} {
		path := filepath.Join(c.LogDir, name)
		if name == "kube-controller-manager.log" && c.ControllerManagerPID() == 0 {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintf(&sb, "--- %s: %v\n", path, err)
			continue
		}
		fmt.Fprintf(&sb, "--- last %d lines of %s:\n%s\n", logTailLines, path, tail(string(data), logTailLines))
	}
	return sb.String()
}

// waitHealthy polls check until it succeeds, the process exits or ctx ends.
func (c *Cluster) waitHealthy(ctx context.Context, p *childproc.Process, check func(context.Context) error) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if !p.Running() {
			if logMentions(p.LogPath(), "address already in use") {
				return fmt.Errorf("%s %s: %w", p.Name(), p.ExitDescription(), errPortClash)
			}
			return fmt.Errorf("%s %s before becoming ready", p.Name(), p.ExitDescription())
		}
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		lastErr = check(reqCtx)
		cancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %s (last check: %v): %w", c.opts.StartTimeout, lastErr, ctx.Err())
		case <-p.Done():
		case <-tick.C:
		}
	}
}

func etcdHealthy(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		body, err := httpGet(ctx, http.DefaultClient, url+"/health", "")
		if err != nil {
			return err
		}
		if !strings.Contains(body, `"health":"true"`) {
			return fmt.Errorf("etcd /health: %s", body)
		}
		return nil
	}
}

func apiserverReady(host, token string) func(context.Context) error {
	// The serving cert does not exist before the apiserver writes it, and
	// this is a readiness probe on loopback, so it does not verify it.
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	return func(ctx context.Context) error {
		body, err := httpGet(ctx, client, host+"/readyz", token)
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "ok" {
			return fmt.Errorf("/readyz: %s", body)
		}
		return nil
	}
}

func httpGet(ctx context.Context, client *http.Client, url, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, tail(string(body), 5))
	}
	return string(body), nil
}

func logMentions(path, s string) bool {
	data, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(data), s)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generating service-account signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing service-account signing key: %w", err)
	}
	return nil
}

// WriteKubeconfig writes a kubeconfig with cfg's server, CA and bearer token to path, so that a process
// under test runs with exactly those credentials (e.g. a ServiceAccountAccess's Config).
func WriteKubeconfig(path string, cfg *rest.Config) error {
	const name = "zonetoll-testcluster"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	kc.CurrentContext = name
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// RSS returns the resident memory of kube-apiserver and etcd in bytes, read
// from /proc (Linux only).
func (c *Cluster) RSS() (apiserver, etcd uint64, err error) {
	apiPID, etcdPID := c.PIDs()
	if apiserver, err = processRSS(apiPID); err != nil {
		return 0, 0, err
	}
	if etcd, err = processRSS(etcdPID); err != nil {
		return 0, 0, err
	}
	return apiserver, etcd, nil
}

func processRSS(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading memory of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS of pid %d: %w", pid, err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
