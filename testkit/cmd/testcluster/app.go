package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// state is what `up` leaves behind for `down` and `status`.
type state struct {
	PID          int    `json:"pid"` // the `serve` process; its death stops the cluster
	Host         string `json:"host"`
	Kubeconfig   string `json:"kubeconfig"`
	LogDir       string `json:"logDir"`
	APIServerPID int    `json:"apiserverPID"`
	EtcdPID      int    `json:"etcdPID"`
	Version      string `json:"version"` // the release the server reports
	Kubectl      string `json:"kubectl"` // the kubectl built from the same release
}

const stateFile = "state.json"

func newApp() *cli.App {
	stateDirFlag := &cli.StringFlag{
		Name:  "state-dir",
		Usage: "where `up` keeps its state, kubeconfig and logs (default: <user cache dir>/zonetoll/testcluster/up)",
	}
	apiserverArgFlag := &cli.StringSliceFlag{
		Name:  "apiserver-arg",
		Usage: "extra kube-apiserver flag, e.g. --apiserver-arg=--audit-policy-file=/p.yaml (repeatable)",
	}
	versionFlag := &cli.StringFlag{
		Name: "kubernetes-version",
		Usage: "Kubernetes release to build or run: " + testcluster.KubernetesVersion + " (newest, the default), " +
			testcluster.OldestKubernetesVersion + " (oldest supported), or another v1.X.Y; each has its own cache dir",
		EnvVars: []string{testcluster.EnvVersion},
	}
	return &cli.App{
		Name:  "testcluster",
		Usage: "build and run a real kube-apiserver (" + testcluster.KubernetesVersion + " by default) + etcd on loopback",
		Commands: []*cli.Command{
			{
				Name:  "build",
				Usage: "build kube-apiserver, etcd and kubectl from the Go module proxy into the cache (only the first build is slow)",
				Flags: []cli.Flag{versionFlag, &cli.BoolFlag{Name: "force", Usage: "rebuild even if the cache is current"},
					&cli.BoolFlag{Name: "routing", Usage: "build kube-controller-manager and kube-proxy of the release instead (for tests that route through Services)"}},
				Action: func(cctx *cli.Context) error {
					version, err := testcluster.ResolveVersion(cctx.String("kubernetes-version"))
					if err != nil {
						return err
					}
					if cctx.Bool("routing") {
						return buildRouting(cctx, version)
					}
					st, err := testcluster.BuildVersion(cctx.Context, version, testcluster.BuildOptions{Force: cctx.Bool("force"), Progress: os.Stderr})
					if err != nil {
						return err
					}
					dir, err := testcluster.BinDirFor(version)
					if err != nil {
						return err
					}
					fmt.Printf("kube-apiserver %s, etcd %s and kubectl in %s\n", st.KubernetesVersion, st.EtcdVersion, dir)
					return nil
				},
			},
			{
				Name:   "up",
				Usage:  "start a cluster that stays up in the background and print how to use it",
				Flags:  []cli.Flag{stateDirFlag, apiserverArgFlag, versionFlag},
				Action: clusterAction(up),
			},
			{
				Name:   "serve",
				Usage:  "run a cluster in the foreground until SIGTERM (what `up` runs detached)",
				Hidden: true,
				Flags:  []cli.Flag{stateDirFlag, apiserverArgFlag, versionFlag},
				Action: clusterAction(serve),
			},
			{
				Name:   "down",
				Usage:  "stop the cluster `up` started",
				Flags:  []cli.Flag{stateDirFlag},
				Action: stateAction(down),
			},
			{
				Name:   "status",
				Usage:  "say whether the cluster `up` started is running and ready",
				Flags:  []cli.Flag{stateDirFlag},
				Action: stateAction(status),
			},
		},
	}
}

func stateDir(flag string) (string, error) {
	if flag != "" {
		return filepath.Abs(flag)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache dir (use --state-dir): %w", err)
	}
	return filepath.Join(cache, "zonetoll", "testcluster", "up"), nil
}

// readState returns the state of a running `serve`, or nil if none runs.
func readState(dir string) (*state, error) {
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state: %w", err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading state %s: %w", filepath.Join(dir, stateFile), err)
	}
	if !processAlive(st.PID) {
		// A killed serve cannot remove its state file; its children died
		// with it (parent-death signal).
		os.Remove(filepath.Join(dir, stateFile))
		return nil, nil
	}
	return &st, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && len(s) > i+2 && s[i+2] != 'Z'
}

func up(ctx context.Context, dir, version string, apiserverArgs []string) error {
	if st, err := readState(dir); err != nil {
		return err
	} else if st != nil {
		return fmt.Errorf("a cluster is already up (pid %d, KUBECONFIG=%s); run `testcluster down` first", st.PID, st.Kubeconfig)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding own executable: %w", err)
	}
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("creating serve log: %w", err)
	}
	defer logf.Close()
	args := []string{"serve", "--state-dir", dir, "--kubernetes-version", version}
	for _, a := range apiserverArgs {
		args = append(args, "--apiserver-arg", a)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Its own session: the cluster outlives this command and the terminal.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting background cluster: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return fmt.Errorf("background cluster exited (%v):\n%s", err, out)
		case <-timeout:
			cmd.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("background cluster not ready after 3 minutes; see %s", logPath)
		case <-ctx.Done():
			cmd.Process.Signal(syscall.SIGTERM)
			return ctx.Err()
		case <-tick.C:
		}
		st, err := readState(dir)
		if err != nil || st == nil || st.PID != cmd.Process.Pid {
			continue
		}
		fmt.Printf(`test cluster up: kube-apiserver %s at %s (background pid %d)
logs: %s

  export KUBECONFIG=%s
  %s get --raw /readyz     # the kubectl of the same release
  %[6]s version

stop it with: testcluster down   (cd testkit && go run ./cmd/testcluster down)
`, st.Version, st.Host, st.PID, st.LogDir, st.Kubeconfig, st.Kubectl)
		return nil
	}
}

func serve(ctx context.Context, dir, version string, apiserverArgs []string) error {
	if st, err := readState(dir); err != nil {
		return err
	} else if st != nil && st.PID != os.Getpid() {
		return fmt.Errorf("a cluster is already up (pid %d)", st.PID)
	}
	logDir := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("creating log dir: %w", err)
	}
	// Old logs would be appended to; start clean.
	for _, name := range []string{"etcd.log", "kube-apiserver.log"} {
		os.Remove(filepath.Join(logDir, name))
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := testcluster.Start(ctx, testcluster.Options{Version: version, LogDir: logDir, ExtraAPIServerArgs: apiserverArgs, Logger: log})
	if err != nil {
		return err
	}
	defer c.Stop()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	data, err := os.ReadFile(c.Kubeconfig)
	if err != nil {
		return fmt.Errorf("reading kubeconfig: %w", err)
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	apiPID, etcdPID := c.PIDs()
	st := state{PID: os.Getpid(), Host: c.Config.Host, Kubeconfig: kubeconfig, LogDir: logDir, APIServerPID: apiPID, EtcdPID: etcdPID,
		Version: c.Version, Kubectl: c.Kubectl()}
	data, err = json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding state: %w", err)
	}
	statePath := filepath.Join(dir, stateFile)
	tmp := statePath + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	if err := os.Rename(tmp, statePath); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	defer os.Remove(statePath)
	log.Info("cluster up", "kubeconfig", kubeconfig, "pid", st.PID)
	<-ctx.Done()
	log.Info("stopping cluster")
	return c.Stop()
}

func down(ctx context.Context, dir string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st == nil {
		fmt.Println("no test cluster is up")
		return nil
	}
	if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling pid %d: %w", st.PID, err)
	}
	deadline := time.Now().Add(45 * time.Second)
	for processAlive(st.PID) {
		if time.Now().After(deadline) {
			// SIGKILL of serve kills its children through their parent-death signal.
			syscall.Kill(st.PID, syscall.SIGKILL)
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	for _, pid := range []int{st.APIServerPID, st.EtcdPID} {
		for i := 0; i < 100 && processAlive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if processAlive(pid) {
			return fmt.Errorf("pid %d still running after stopping the cluster", pid)
		}
	}
	os.Remove(filepath.Join(dir, stateFile))
	fmt.Println("test cluster stopped")
	return nil
}

func status(ctx context.Context, dir string) error {
	st, err := readState(dir)
	if err != nil {
		return err
	}
	if st == nil {
		return errors.New("no test cluster is up (start one with `testcluster up`)")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating client: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := cs.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("cluster (pid %d) is not ready: %w", st.PID, err)
	}
	fmt.Fprintf(os.Stdout, "test cluster up at %s (pid %d), /readyz: %s\nexport KUBECONFIG=%s\n", st.Host, st.PID, strings.TrimSpace(string(body)), st.Kubeconfig)
	return nil
}

// clusterAction is the action of `up` and `serve`: run with the state dir, the release and the extra
// API server flags the command line names.
func clusterAction(run func(ctx context.Context, dir, version string, apiserverArgs []string) error) cli.ActionFunc {
	return func(cctx *cli.Context) error {
		version, err := testcluster.ResolveVersion(cctx.String("kubernetes-version"))
		if err != nil {
			return err
		}
		return stateAction(func(ctx context.Context, dir string) error {
			return run(ctx, dir, version, cctx.StringSlice("apiserver-arg"))
		})(cctx)
	}
}

// stateAction is the action of a command that works on the state dir --state-dir names.
func stateAction(run func(ctx context.Context, dir string) error) cli.ActionFunc {
	return func(cctx *cli.Context) error {
		dir, err := stateDir(cctx.String("state-dir"))
		if err != nil {
			return err
		}
		return run(cctx.Context, dir)
	}
}

// buildRouting builds kube-controller-manager and kube-proxy of version.
func buildRouting(cctx *cli.Context, version string) error {
	st, err := testcluster.BuildRoutingVersion(cctx.Context, version, testcluster.BuildOptions{Force: cctx.Bool("force"), Progress: os.Stderr})
	if err != nil {
		return err
	}
	dir, err := testcluster.RoutingBinDirFor(version)
	if err != nil {
		return err
	}
	fmt.Printf("kube-controller-manager and kube-proxy %s in %s\n", st.KubernetesVersion, dir)
	return nil
}
