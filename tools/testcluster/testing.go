package testcluster

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"
)

// SkipIfDisabled skips t when ZONETOLL_SKIP_CLUSTER_TESTS=1. It is the only
// sanctioned way for a cluster test to skip; CI never sets the variable, so
// missing binaries fail there with a message saying how to build them.
func SkipIfDisabled(t testing.TB) {
	t.Helper()
	if os.Getenv(EnvSkip) == "1" {
		t.Skipf("%s=1: skipping test that needs kube-apiserver and etcd", EnvSkip)
	}
}

// StartT starts a cluster for a test: it skips when SkipIfDisabled says so,
// fails t if the cluster cannot start, and stops it in t.Cleanup. When the test
// failed, the end of both logs is logged with the test's output.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	SkipIfDisabled(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting test cluster: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("test failed; test cluster logs:\n%s", c.LogTails())
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stopping test cluster: %v", err)
		}
	})
	return c
}

// tWriter sends slog output to t.Log so it appears with the test.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// KubeconfigT writes cfg's kubeconfig (see WriteKubeconfig) into a temporary directory of t and returns
// its path.
func KubeconfigT(t testing.TB, cfg *rest.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := WriteKubeconfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	return path
}
