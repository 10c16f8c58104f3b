package testcluster

import (
	"context"
	"log/slog"
	"path/filepath"

	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// Need lets a test that needs the cluster's binaries go on, or skips/fails it through the gate with
// the command that builds them.
func Need(t gate.TB) {
	t.Helper()
	needVersion(t, "")
}

// needVersion is Need for a release (ResolveVersion; "" is Version()).
func needVersion(t gate.TB, version string) {
	t.Helper()
	if version == "" {
		var err error
		if version, err = Version(); err != nil {
			t.Fatalf("%v", err)
		}
	} else if v, err := ResolveVersion(version); err != nil {
		t.Fatalf("%v", err)
	} else {
		version = v
	}
	err := installed(version)
	install := "make testcluster"
	if version != KubernetesVersion {
		install = buildCommand(version)
	}
	gate.Need(t, "kube-apiserver "+version+", etcd and kubectl of the test cluster", err, install)
}

// StartT starts a cluster for a test: it goes through the gate (Need), fails t if the cluster cannot
// start, and stops it in t.Cleanup. When the test failed, the end of both logs is logged with the
// test's output.
func StartT(t gate.TB, opts Options) *Cluster {
	t.Helper()
	needVersion(t, opts.Version)
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
type tWriter struct{ t gate.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// KubeconfigT writes cfg's kubeconfig (see WriteKubeconfig) into a temporary directory of t and returns
// its path.
func KubeconfigT(t gate.TB, cfg *rest.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := WriteKubeconfig(path, cfg); err != nil {
		t.Fatal(err)
	}
	return path
}

// installed reports why the binaries of BinDir cannot run, or nil.
func installed(version string) error {
	dir, err := BinDirFor(version)
	if err != nil {
		return err
	}
	for _, name := range []string{APIServerBinary, EtcdBinary, KubectlBinary} {
		if err := modbuild.CheckExecutable(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// NeedRouting lets a test that needs kube-controller-manager and kube-proxy of the cluster's release
// (version "" is Version()) go on, or skips/fails it through the gate with the command that builds them.
func NeedRouting(t gate.TB, version string) {
	t.Helper()
	v, err := ResolveVersion(version)
	if version == "" {
		v, err = Version()
	}
	if err != nil {
		t.Fatalf("%v", err)
	}
	install := "make testcluster"
	if v != KubernetesVersion {
		install = buildCommand(v) + " --routing"
	}
	gate.Need(t, "kube-controller-manager and kube-proxy "+v+" of the test cluster", routingInstalled(v), install)
}
