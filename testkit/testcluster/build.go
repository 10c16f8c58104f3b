package testcluster

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// KubernetesVersion is the kube-apiserver release the test cluster runs. It is
// the minor of the project's client-go (v0.33.x) and of the kubectl on the
// machines we use. The etcd version is whatever this release pins.
const KubernetesVersion = "v1.33.13"

// buildRecipe changes whenever the way the binaries are built changes (flags,
// ldflags, layout), so caches built by an older recipe are rebuilt.
const buildRecipe = 1

// Environment variables understood by this package.
const (
	// EnvBinDir overrides the directory holding kube-apiserver and etcd.
	EnvBinDir = "ZONETOLL_TESTCLUSTER_BIN_DIR"
)

// Binary names inside the bin dir.
const (
	APIServerBinary = "kube-apiserver"
	EtcdBinary      = "etcd"
)

// BuildHint is the command that fills the bin dir.
const BuildHint = "run `make testcluster` (or `cd testkit && go run ./cmd/testcluster build`)"

// BinDir returns the directory holding the binaries: $ZONETOLL_TESTCLUSTER_BIN_DIR
// if set, else <user cache dir>/zonetoll/testcluster/k8s-<version>.
func BinDir() (string, error) { return recipe().Dir() }

// Stamp records what a build produced; it is written after both binaries are
// in place, so its presence with the current key means the cache is complete.
type Stamp struct {
	Key               string    `json:"key"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	EtcdVersion       string    `json:"etcdVersion"`
	GoVersion         string    `json:"goVersion"`
	BuiltAt           time.Time `json:"builtAt"`
	BuildSeconds      float64   `json:"buildSeconds"`
}

func stampKey() string {
	return fmt.Sprintf("kubernetes=%s recipe=%d", KubernetesVersion, buildRecipe)
}

// BuildOptions configures Build: BinDir (empty means BinDir()), Force,
// Progress and GoCommand.
type BuildOptions = modbuild.Options

// Build makes kube-apiserver and etcd from the Go module proxy unless the bin
// dir already holds binaries of the current version key. It is safe to run
// concurrently: a file lock serialises builds and binaries are renamed into
// place only when complete.
func Build(ctx context.Context, opts BuildOptions) (*Stamp, error) {
	return recipe().Build(ctx, opts)
}

// recipe is how kube-apiserver and etcd are built: from one throwaway module
// requiring k8s.io/kubernetes, which pins the etcd it is tested with.
func recipe() modbuild.Recipe[Stamp] {
	return modbuild.Recipe[Stamp]{
		Name:       "testcluster",
		DirEnv:     EnvBinDir,
		CacheDir:   []string{"testcluster", "k8s-" + KubernetesVersion},
		Module:     "k8s.io/kubernetes",
		Version:    KubernetesVersion,
		What:       "kube-apiserver " + KubernetesVersion + " and etcd",
		FirstBuild: "first build on a machine takes ~8 minutes on 2 cores",
		Download:   "~700 MB when the module cache is cold",
		Key:        stampKey(),
		Binaries:   []string{APIServerBinary, EtcdBinary},
		GoMod:      throwawayGoMod,
		ToolsGo:    toolsGo,
		Plan: func(ctx context.Context, g *modbuild.Go, published time.Time) (*modbuild.Plan[Stamp], error) {
			etcdVersion, err := g.Run(ctx, "finding the pinned etcd", "list", "-m", "-f", "{{.Version}}", etcdModule)
			if err != nil {
				return nil, err
			}
			return plan(published, strings.TrimSpace(etcdVersion)), nil
		},
	}
}

const etcdModule = "go.etcd.io/etcd/server/v3"

// plan compiles both binaries once tidy has settled which etcd kubernetes pins.
func plan(published time.Time, etcdVersion string) *modbuild.Plan[Stamp] {
	return &modbuild.Plan[Stamp]{
		Targets: []modbuild.Target{
			{
				Name:    APIServerBinary,
				Package: "k8s.io/kubernetes/cmd/kube-apiserver",
				LDFlags: versionLDFlags(KubernetesVersion, published),
				Version: KubernetesVersion,
			},
			{
				Name:    EtcdBinary,
				Package: etcdModule,
				LDFlags: "-s -w",
				// etcd prints "etcd Version: 3.5.21".
				Version: strings.TrimPrefix(etcdVersion, "v"),
			},
		},
		Stamp: func(b modbuild.Built) *Stamp {
			return &Stamp{
				Key:               b.Key,
				KubernetesVersion: KubernetesVersion,
				EtcdVersion:       etcdVersion,
				GoVersion:         b.GoVersion,
				BuiltAt:           b.BuiltAt,
				BuildSeconds:      b.BuildSeconds,
			}
		},
	}
}

var stagingReplace = regexp.MustCompile(`(?m)^\s*(k8s\.io/[A-Za-z0-9._-]+)\s*=>\s*\./staging/src/k8s\.io/[A-Za-z0-9._-]+\s*$`)
var godebugLine = regexp.MustCompile(`(?m)^godebug\s+.*$`)

// throwawayGoMod turns kubernetes' staging replaces (./staging/src/k8s.io/X)
// into the published k8s.io/X v0.<minor>.<patch> modules, which is what makes
// k8s.io/kubernetes buildable as a dependency.
func throwawayGoMod(k8sMod string) (string, error) {
	stagingVersion := "v0" + strings.TrimPrefix(KubernetesVersion, "v1")
	matches := stagingReplace.FindAllStringSubmatch(k8sMod, -1)
	if len(matches) == 0 {
		return "", errors.New("kubernetes go.mod has no staging replaces; the build recipe needs updating")
	}
	var sb strings.Builder
	sb.WriteString("// Generated by zonetoll tools/testcluster; safe to delete.\n")
	sb.WriteString("module zonetoll.local/testcluster-build\n\ngo 1.24.0\n\n")
	// kubernetes' own godebug defaults apply only when it is the main module;
	// copy them so the binaries behave like the release.
	for _, l := range godebugLine.FindAllString(k8sMod, -1) {
		sb.WriteString(l + "\n")
	}
	fmt.Fprintf(&sb, "\nrequire k8s.io/kubernetes %s\n\nreplace (\n", KubernetesVersion)
	for _, m := range matches {
		fmt.Fprintf(&sb, "\t%s => %s %s\n", m[1], m[1], stagingVersion)
	}
	sb.WriteString(")\n")
	return sb.String(), nil
}

const toolsGo = `//go:build tools

// Package tools pins the commands built by zonetoll tools/testcluster.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
`

// versionLDFlags sets the version variables kubernetes' own build sets, so the
// server reports its real version (kubectl chooses its client by it).
func versionLDFlags(version string, buildTime time.Time) string {
	major, minor := "1", ""
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	flags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=archive",
			// The module's publish time keeps the build reproducible.
			"-X", pkg+".buildDate="+buildTime.UTC().Format(time.RFC3339),
		)
	}
	return strings.Join(flags, " ")
}

// checkExecutable and tail are shared with the cluster code.
func checkExecutable(path string) error { return modbuild.CheckExecutable(path) }

func tail(s string, n int) string { return modbuild.Tail(s, n) }
