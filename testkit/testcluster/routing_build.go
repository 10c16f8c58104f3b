package testcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// The routing parts of the control plane: the EndpointSlice controller (in
// kube-controller-manager) and kube-proxy. Only tests and the demo that route
// traffic through Services need them, so they are built only when asked for
// (BuildRoutingVersion, `testcluster build --routing`, make testcluster), into
// a directory of their own inside the release's cache dir: an older cache
// without them stays current for everything else.
const (
	ControllerManagerBinary = "kube-controller-manager"
	KubeProxyBinary         = "kube-proxy"
)

// EnvRoutingBinDir overrides the directory holding kube-controller-manager
// and kube-proxy (default: RoutingBinDirFor).
const EnvRoutingBinDir = "ZONETOLL_TESTCLUSTER_ROUTING_BIN_DIR"

// routingRecipeVersion changes whenever the way the routing binaries are
// built changes.
const routingRecipeVersion = 1

func routingStampKey(version string) string {
	return fmt.Sprintf("kubernetes=%s routing-recipe=%d", version, routingRecipeVersion)
}

// RoutingBinDirFor returns where kube-controller-manager and kube-proxy of
// version live: $ZONETOLL_TESTCLUSTER_ROUTING_BIN_DIR if set, else the
// routing/ directory inside BinDirFor(version), so the release's cache holds
// them, its throwaway module and its lock beside the API server's.
func RoutingBinDirFor(version string) (string, error) {
	if d := os.Getenv(EnvRoutingBinDir); d != "" {
		return filepath.Abs(d)
	}
	dir, err := BinDirFor(version)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "routing"), nil
}

// RoutingBuildHint is the command that builds the routing binaries of version.
func RoutingBuildHint(version string) string {
	if version == KubernetesVersion {
		return "run `make testcluster` (or `cd testkit && go run ./cmd/testcluster build --routing`)"
	}
	return "run `" + buildCommand(version) + " --routing`"
}

// BuildRoutingVersion builds kube-controller-manager and kube-proxy of a
// Kubernetes release, from the same k8s.io/kubernetes module as the API
// server (same go.mod rewrite, same version ldflags, same Go caches), unless
// the routing dir already holds a current build. Like BuildVersion it is safe
// to run concurrently.
func BuildRoutingVersion(ctx context.Context, version string, opts BuildOptions) (*Stamp, error) {
	if !releaseVersion.MatchString(version) {
		return nil, fmt.Errorf("building the test cluster's routing parts: %q is not a Kubernetes release such as %s", version, KubernetesVersion)
	}
	if opts.BinDir == "" {
		dir, err := RoutingBinDirFor(version)
		if err != nil {
			return nil, err
		}
		opts.BinDir = dir
	}
	return routingRecipe(version).Build(ctx, opts)
}

func routingRecipe(version string) modbuild.Recipe[Stamp] {
	return modbuild.Recipe[Stamp]{
		Name:     "testcluster",
		DirEnv:   EnvRoutingBinDir,
		CacheDir: []string{"testcluster", "k8s-" + version, "routing"},
		Module:   "k8s.io/kubernetes",
		Version:  version,
		What:     "kube-controller-manager and kube-proxy " + version,
		// Measured: docs/testcluster.md, Figures.
		FirstBuild: "first build takes 1–5 minutes after the API server's (docs/testcluster.md, Figures)",
		Download:   "nothing new when the API server was built",
		Key:        routingStampKey(version),
		Binaries:   []string{ControllerManagerBinary, KubeProxyBinary},
		GoMod:      func(upstream string) (string, error) { return throwawayGoMod(version, upstream) },
		ToolsGo:    routingToolsGo,
		Plan: func(_ context.Context, _ *modbuild.Go, published time.Time) (*modbuild.Plan[Stamp], error) {
			return routingPlan(version, published), nil
		},
	}
}

func routingPlan(version string, published time.Time) *modbuild.Plan[Stamp] {
	return &modbuild.Plan[Stamp]{
		Targets: []modbuild.Target{
			// Both print "Kubernetes v1.37.2" for --version.
			{Name: ControllerManagerBinary, Package: "k8s.io/kubernetes/cmd/kube-controller-manager",
				LDFlags: versionLDFlags(version, published), Version: "Kubernetes " + version},
			{Name: KubeProxyBinary, Package: "k8s.io/kubernetes/cmd/kube-proxy",
				LDFlags: versionLDFlags(version, published), Version: "Kubernetes " + version},
		},
		// The build.json of the routing binaries: a Stamp without an etcd version.
		Stamp: func(b modbuild.Built) *Stamp {
			return &Stamp{Key: b.Key, KubernetesVersion: version, GoVersion: b.GoVersion,
				BuiltAt: b.BuiltAt, BuildSeconds: b.BuildSeconds}
		},
	}
}

const routingToolsGo = `//go:build tools

// Package tools pins the commands built by zonetoll testkit/testcluster (routing).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
`

// routingInstalled reports why the routing binaries of version cannot run, or nil.
func routingInstalled(version string) error {
	dir, err := RoutingBinDirFor(version)
	if err != nil {
		return err
	}
	_, err = routingRecipe(version).Installed(dir, RoutingBuildHint(version))
	return err
}
