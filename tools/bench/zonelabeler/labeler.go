package zonelabeler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/testkit/freeport"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/process"
)

// buildFlags are those of `make build` (Makefile), so the benchmark measures the binary users run: a
// static, stripped executable. Stripping matters to RSS only a little (symbols are never paged in), but
// the file-backed part of RSS is what a deployment pays and it depends on how the binary is linked.
var buildFlags = []string{"-trimpath", "-ldflags", "-s -w"}

// buildLabeler builds cmd/zonelabeler from the module at srcDir into dir and returns the binary's path.
func buildLabeler(ctx context.Context, srcDir, dir string) (string, error) {
	bin := filepath.Join(dir, "zonelabeler")
	args := append(append([]string{"build"}, buildFlags...), "-o", bin, "./cmd/zonelabeler")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = srcDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building zonelabeler in %s: %w\n%s", srcDir, err, out)
	}
	return bin, nil
}

// logLines is how much of the labeler's log an error shows.
const logLines = 40

// labeler is a running zonelabeler process.
type labeler struct {
	*process.Process
	addr string // its HTTP server (metrics, readiness)
}

// startLabeler runs `zonelabeler run` against kubeconfig with its lease in leaseNamespace and the
// labeler's default settings, except for extra (ZONETOLL_* assignments). Its logs (warnings and errors
// only) go to logPath.
func startLabeler(bin, kubeconfig, leaseNamespace, logPath string, extra []string) (*labeler, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "--kubeconfig", kubeconfig)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"ZONETOLL_HTTP_LISTEN_ADDRESS=" + addr,
		"ZONETOLL_LEADER_ELECTION_NAMESPACE=" + leaseNamespace,
		"ZONETOLL_LOG_LEVEL=warn",
	}
	cmd.Env = append(cmd.Env, extra...)
	p, err := process.Start("zonelabeler", cmd, logPath)
	if err != nil {
		return nil, err
	}
	return &labeler{Process: p, addr: addr}, nil
}

// labelerSettings turns ZONETOLL_BENCH_LABELER_<X>=v in env into ZONETOLL_<X>=v, so a run can change a
// labeler setting (ZONETOLL_BENCH_LABELER_KUBE_QPS=200) without the benchmark's own process reading it.
func labelerSettings(env []string) []string {
	const prefix = "ZONETOLL_BENCH_LABELER_"
	var out []string
	for _, kv := range env {
		if rest, ok := strings.CutPrefix(kv, prefix); ok && rest != "" && !strings.HasPrefix(rest, "=") {
			out = append(out, "ZONETOLL_"+rest)
		}
	}
	return out
}

// waitLeading waits until the labeler is ready (caches synced) and holds the lease, i.e. writes labels.
func (l *labeler) waitLeading(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if done, err := l.Exited(); done {
			return fmt.Errorf("zonelabeler exited before leading (%v); log:\n%s", err, l.LogTail(logLines))
		}
		last = l.leading(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("zonelabeler not leading after %s: %w; log:\n%s", timeout, last, l.LogTail(logLines))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *labeler) leading(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.addr+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("checking readiness: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// A 200 before the service has registered its cache check means only that the HTTP server is up,
	// and its collectors may not be wired yet: scraping /metrics then has crashed the labeler.
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("[+]informers-synced ok")) {
		return fmt.Errorf("not ready: %s: %s", resp.Status, bytes.TrimSpace(body))
	}
	m, err := l.metrics(ctx)
	if err != nil {
		return err
	}
	if m.Sum("zonetoll_zonelabeler_leader", nil) != 1 {
		return errors.New("ready but not holding the lease yet")
	}
	return nil
}

// metrics scrapes the labeler's /metrics.
func (l *labeler) metrics(ctx context.Context) (metricstest.Samples, error) {
	fams, err := metricstest.Fetch(ctx, nil, "http://"+l.addr+"/metrics")
	if err != nil {
		return nil, err
	}
	return fams.Samples(), nil
}
