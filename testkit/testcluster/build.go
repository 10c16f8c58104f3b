package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// KubernetesVersion is the kube-apiserver release the test cluster runs unless
// told otherwise: the newest supported release, the minor of the project's
// client-go (v0.37.x). The etcd version is whatever the release pins.
const KubernetesVersion = "v1.37.2"

// OldestKubernetesVersion is the oldest release zonetoll supports (README,
// docs/deploy.md); make test runs the end-to-end test against it as well.
const OldestKubernetesVersion = "v1.35.4"

// buildRecipe changes whenever the way the binaries are built changes (flags,
// ldflags, layout), so caches built by an older recipe are rebuilt.
// 2: kubectl is built beside kube-apiserver and etcd.
const buildRecipe = 2

// Environment variables understood by this package.
const (
	// EnvBinDir overrides the directory holding kube-apiserver and etcd.
	EnvBinDir = "ZONETOLL_TESTCLUSTER_BIN_DIR"
	// EnvVersion selects the Kubernetes release that Build builds and Start
	// runs when the caller does not name one: a version (v1.36.3), "oldest"
	// or "newest". Unset means KubernetesVersion.
	EnvVersion = "ZONETOLL_TESTCLUSTER_KUBERNETES_VERSION"
)

// Binary names inside the bin dir.
const (
	APIServerBinary = "kube-apiserver"
	EtcdBinary      = "etcd"
	KubectlBinary   = "kubectl"
)

// BuildHint is the command that fills the bin dir of KubernetesVersion.
const BuildHint = "run `make testcluster` (or `cd testkit && go run ./cmd/testcluster build`)"

// buildHint is the command that fills the bin dir of version.
func buildHint(version string) string {
	if version == KubernetesVersion {
		return BuildHint
	}
	return "run `" + buildCommand(version) + "`"
}

// buildCommand fills the bin dir of version.
func buildCommand(version string) string {
	return "cd testkit && go run ./cmd/testcluster build --kubernetes-version " + version
}

var releaseVersion = regexp.MustCompile(`^v1\.[0-9]+\.[0-9]+$`)

// ResolveVersion turns what a user or $ZONETOLL_TESTCLUSTER_KUBERNETES_VERSION
// says into a release: "" and "newest" are KubernetesVersion, "oldest" is
// OldestKubernetesVersion, anything else must be a release such as v1.36.3.
func ResolveVersion(s string) (string, error) {
	switch s {
	case "", "newest":
		return KubernetesVersion, nil
	case "oldest":
		return OldestKubernetesVersion, nil
	}
	if !releaseVersion.MatchString(s) {
		return "", fmt.Errorf("kubernetes version %q: want a release such as %s, or oldest or newest", s, KubernetesVersion)
	}
	return s, nil
}

// Version returns the release selected by $ZONETOLL_TESTCLUSTER_KUBERNETES_VERSION
// (KubernetesVersion when it is unset).
func Version() (string, error) {
	v, err := ResolveVersion(os.Getenv(EnvVersion))
	if err != nil {
		return "", fmt.Errorf("%s: %w", EnvVersion, err)
	}
	return v, nil
}

// BinDir returns the directory holding the binaries of the release Version()
// selects: $ZONETOLL_TESTCLUSTER_BIN_DIR if set, else
// <user cache dir>/zonetoll/testcluster/k8s-<version>.
func BinDir() (string, error) {
	v, err := Version()
	if err != nil {
		return "", err
	}
	return BinDirFor(v)
}

// BinDirFor is BinDir for a given release.
func BinDirFor(version string) (string, error) { return recipe(version).Dir() }

// Stamp records what a build produced; it is written after the binaries are
// in place, so its presence with the current key means the cache is complete.
// The routing binaries' stamp has no etcd version.
type Stamp struct {
	Key               string    `json:"key"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	EtcdVersion       string    `json:"etcdVersion,omitempty"`
	GoVersion         string    `json:"goVersion"`
	BuiltAt           time.Time `json:"builtAt"`
	BuildSeconds      float64   `json:"buildSeconds"`
}

func stampKey(version string) string {
	return fmt.Sprintf("kubernetes=%s recipe=%d", version, buildRecipe)
}

// BuildOptions configures Build: BinDir (empty means BinDir()), Force,
// Progress and GoCommand.
type BuildOptions = modbuild.Options

// Build makes kube-apiserver, etcd and kubectl of the release Version()
// selects; see BuildVersion.
func Build(ctx context.Context, opts BuildOptions) (*Stamp, error) {
	v, err := Version()
	if err != nil {
		return nil, err
	}
	return BuildVersion(ctx, v, opts)
}

// BuildVersion makes kube-apiserver, etcd and kubectl of a Kubernetes release
// from the Go module proxy unless the bin dir (BinDirFor(version) by default)
// already holds binaries of the current version key. It is safe to run
// concurrently: a file lock serialises builds and binaries are renamed into
// place only when complete. Each release has its own cache dir, so several
// can be kept side by side.
func BuildVersion(ctx context.Context, version string, opts BuildOptions) (*Stamp, error) {
	if !releaseVersion.MatchString(version) {
		return nil, fmt.Errorf("building the test cluster: %q is not a Kubernetes release such as %s", version, KubernetesVersion)
	}
	return recipe(version).Build(ctx, opts)
}

// recipe is how kube-apiserver, etcd and kubectl are built: from one
// throwaway module requiring k8s.io/kubernetes, which pins the etcd it is
// tested with.
func recipe(version string) modbuild.Recipe[Stamp] {
	return modbuild.Recipe[Stamp]{
		Name:       "testcluster",
		DirEnv:     EnvBinDir,
		CacheDir:   []string{"testcluster", "k8s-" + version},
		Module:     "k8s.io/kubernetes",
		Version:    version,
		What:       "kube-apiserver " + version + ", etcd and kubectl",
		FirstBuild: "first build on a machine takes ~8 minutes on 2 cores",
		Download:   "~700 MB when the module cache is cold",
		Key:        stampKey(version),
		Binaries:   []string{APIServerBinary, EtcdBinary, KubectlBinary},
		GoMod:      func(upstream string) (string, error) { return throwawayGoMod(version, upstream) },
		ToolsGo:    toolsGo,
		Plan: func(ctx context.Context, g *modbuild.Go, published time.Time) (*modbuild.Plan[Stamp], error) {
			etcdVersion, err := g.Run(ctx, "finding the pinned etcd", "list", "-m", "-f", "{{.Version}}", etcdModule)
			if err != nil {
				return nil, err
			}
			return plan(version, published, strings.TrimSpace(etcdVersion)), nil
		},
	}
}

const etcdModule = "go.etcd.io/etcd/server/v3"

// plan compiles the binaries once tidy has settled which etcd kubernetes pins.
func plan(version string, published time.Time, etcdVersion string) *modbuild.Plan[Stamp] {
	return &modbuild.Plan[Stamp]{
		Targets: []modbuild.Target{
			{
				Name:    APIServerBinary,
				Package: "k8s.io/kubernetes/cmd/kube-apiserver",
				LDFlags: versionLDFlags(version, published),
				Version: version,
			},
			{
				Name:    EtcdBinary,
				Package: etcdModule,
				LDFlags: "-s -w",
				// etcd prints "etcd Version: 3.7.0". In 3.5 to 3.7 the
				// server module's root is still etcd's main package.
				Version: strings.TrimPrefix(etcdVersion, "v"),
			},
			{
				// The kubectl of the same release: the one on a machine may
				// be too old for the server (a dispatcher's newest client).
				Name:        KubectlBinary,
				Package:     "k8s.io/kubernetes/cmd/kubectl",
				LDFlags:     versionLDFlags(version, published),
				Version:     "Client Version: " + version,
				VersionArgs: "version --client",
			},
		},
		Stamp: func(b modbuild.Built) *Stamp {
			return &Stamp{
				Key:               b.Key,
				KubernetesVersion: version,
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
var goLine = regexp.MustCompile(`(?m)^go\s+([0-9][0-9.]*)\s*$`)

// throwawayGoMod turns kubernetes' staging replaces (./staging/src/k8s.io/X)
// into the published k8s.io/X v0.<minor>.<patch> modules, which is what makes
// k8s.io/kubernetes buildable as a dependency.
func throwawayGoMod(version, k8sMod string) (string, error) {
	stagingVersion := "v0" + strings.TrimPrefix(version, "v1")
	matches := stagingReplace.FindAllStringSubmatch(k8sMod, -1)
	if len(matches) == 0 {
		return "", errors.New("kubernetes go.mod has no staging replaces; the build recipe needs updating")
	}
	// The release's own go line: a lower one makes go mod tidy fail on
	// kubernetes' requirement.
	goVersion := "1.24.0"
	if m := goLine.FindStringSubmatch(k8sMod); m != nil {
		goVersion = m[1]
	}
	var sb strings.Builder
	sb.WriteString("// Generated by zonetoll tools/testcluster; safe to delete.\n")
	fmt.Fprintf(&sb, "module zonetoll.local/testcluster-build\n\ngo %s\n\n", goVersion)
	// kubernetes' own godebug defaults apply only when it is the main module;
	// copy them so the binaries behave like the release.
	for _, l := range godebugLine.FindAllString(k8sMod, -1) {
		sb.WriteString(l + "\n")
	}
	fmt.Fprintf(&sb, "\nrequire k8s.io/kubernetes %s\n\nreplace (\n", version)
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
	_ "k8s.io/kubernetes/cmd/kubectl"
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
