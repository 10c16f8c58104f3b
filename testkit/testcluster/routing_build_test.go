package testcluster

import (
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// TestRoutingPlan: kube-controller-manager and kube-proxy are built from the same module with the API
// server's version ldflags, must report the release, and are pinned by their own tools.go.
func TestRoutingPlan(t *testing.T) {
	published := mustTime(t, "2026-10-27T12:01:04Z")
	for _, version := range []string{KubernetesVersion, OldestKubernetesVersion} {
		p := routingPlan(version, published)
		want := []modbuild.Target{
			{Name: ControllerManagerBinary, Package: "k8s.io/kubernetes/cmd/kube-controller-manager",
				LDFlags: versionLDFlags(version, published), Version: "Kubernetes " + version},
			{Name: KubeProxyBinary, Package: "k8s.io/kubernetes/cmd/kube-proxy",
				LDFlags: versionLDFlags(version, published), Version: "Kubernetes " + version},
		}
		if !slices.Equal(p.Targets, want) {
			t.Errorf("%s: targets = %+v, want %+v", version, p.Targets, want)
		}
		r := routingRecipe(version)
		if r.Key != "kubernetes="+version+" routing-recipe=1" || !slices.Equal(r.Binaries, []string{ControllerManagerBinary, KubeProxyBinary}) {
			t.Errorf("%s: recipe key %q, binaries %v", version, r.Key, r.Binaries)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(r.ToolsGo, strconv.Quote(tg.Package)) {
				t.Errorf("routing tools.go does not import %s", tg.Package)
			}
		}
		// The API server's recipe is untouched: caches built before the routing parts stay current.
		if recipe(version).Key != stampKey(version) || strings.Contains(toolsGo, "kube-proxy") {
			t.Errorf("the API server's recipe changed")
		}
	}
}

func TestRoutingBinDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/cache")
	t.Setenv(EnvBinDir, "")
	t.Setenv(EnvRoutingBinDir, "")
	got, err := RoutingBinDirFor(KubernetesVersion)
	if want := "/cache/zonetoll/testcluster/k8s-" + KubernetesVersion + "/routing"; err != nil || got != want {
		t.Errorf("RoutingBinDirFor = %q, %v; want %q", got, err, want)
	}
	t.Setenv(EnvBinDir, "/opt/k8s")
	if got, _ := RoutingBinDirFor(KubernetesVersion); got != "/opt/k8s/routing" {
		t.Errorf("with %s set: %q, want /opt/k8s/routing", EnvBinDir, got)
	}
	t.Setenv(EnvRoutingBinDir, "/opt/routing")
	if got, _ := RoutingBinDirFor(KubernetesVersion); got != "/opt/routing" {
		t.Errorf("with %s set: %q, want /opt/routing", EnvRoutingBinDir, got)
	}
}

// TestRoutingMissingBinariesNameTheBuild: without the binaries the error names the command that builds
// them, for the newest and for another release.
func TestRoutingMissingBinariesNameTheBuild(t *testing.T) {
	t.Setenv(EnvRoutingBinDir, filepath.Join(t.TempDir(), "none"))
	for version, want := range map[string]string{
		KubernetesVersion:       "make testcluster",
		OldestKubernetesVersion: "build --kubernetes-version " + OldestKubernetesVersion + " --routing",
	} {
		err := routingInstalled(version)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", version, err, want)
		}
	}
	c := &Cluster{opts: Options{Version: KubernetesVersion}}
	if _, err := c.routingBinary(KubeProxyBinary); err == nil || !strings.Contains(err.Error(), "not found") || !strings.Contains(err.Error(), "make testcluster") {
		t.Errorf("routingBinary without a build: %v", err)
	}
}

func TestBuildRoutingRejectsNonReleases(t *testing.T) {
	if _, err := BuildRoutingVersion(t.Context(), "oldest", BuildOptions{BinDir: t.TempDir(), GoCommand: "/nonexistent/go"}); err == nil ||
		!strings.Contains(err.Error(), "is not a Kubernetes release") {
		t.Errorf("BuildRoutingVersion(oldest) = %v, want a refusal before anything runs", err)
	}
}
