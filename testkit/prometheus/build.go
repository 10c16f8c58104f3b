// Package prometheus builds upstream prometheus and promtool from the Go module
// proxy and runs them against zonetoll's example scrape configurations.
//
// Debian's prometheus package is built without Kubernetes service discovery,
// so its promtool rejects every kubernetes_sd_configs block; the upstream
// build is the only honest check of the per-zone examples.
package prometheus

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// Version is the Prometheus release built, and ModuleVersion the Go module
// version of github.com/prometheus/prometheus that holds it (3.5.0 is an LTS
// release).
const (
	Version       = "v3.5.0"
	ModuleVersion = "v0.305.0"
	modulePath    = "github.com/prometheus/prometheus"
)

// buildRecipe changes whenever the way the binaries are built changes (flags,
// ldflags, layout), so caches built by an older recipe are rebuilt.
const buildRecipe = 1

// Environment variables understood by this package.
const (
	// EnvBinDir overrides the directory holding prometheus and promtool.
	EnvBinDir = "ZONETOLL_PROMETHEUS_BIN_DIR"
)

// Binary names inside the bin dir.
const (
	PrometheusBinary = "prometheus"
	PromtoolBinary   = "promtool"
)

// BuildHint is the command that fills the bin dir.
const BuildHint = "run `make testcluster` (or `cd testkit && go run ./cmd/prometheus build`)"

// BinDir returns the directory holding the binaries: $ZONETOLL_PROMETHEUS_BIN_DIR
// if set, else <user cache dir>/zonetoll/prometheus/<version>.
func BinDir() (string, error) { return recipe().Dir() }

// Binaries are the paths of a complete build.
type Binaries struct {
	Prometheus string
	Promtool   string
}

// Installed returns the binaries in dir (BinDir() when empty) if a build of
// the current version key is complete there, and an error naming BuildHint
// otherwise.
func Installed(dir string) (Binaries, error) {
	dir, err := recipe().Installed(dir, BuildHint)
	if err != nil {
		return Binaries{}, err
	}
	return binariesIn(dir), nil
}

func binariesIn(dir string) Binaries {
	return Binaries{
		Prometheus: filepath.Join(dir, PrometheusBinary),
		Promtool:   filepath.Join(dir, PromtoolBinary),
	}
}

// Stamp records what a build produced; it is written after both binaries are
// in place, so its presence with the current key means the cache is complete.
type Stamp struct {
	Key           string    `json:"key"`
	Version       string    `json:"version"`
	ModuleVersion string    `json:"moduleVersion"`
	GoVersion     string    `json:"goVersion"`
	BuiltAt       time.Time `json:"builtAt"`
	BuildSeconds  float64   `json:"buildSeconds"`
}

func stampKey() string {
	return fmt.Sprintf("prometheus=%s module=%s recipe=%d", Version, ModuleVersion, buildRecipe)
}

// BuildOptions configures Build: BinDir (empty means BinDir()), Force,
// Progress and GoCommand.
type BuildOptions = modbuild.Options

// Build makes prometheus and promtool from the Go module proxy unless the bin
// dir already holds binaries of the current version key. It is safe to run
// concurrently: a file lock serialises builds and binaries are renamed into
// place only when complete and verified.
func Build(ctx context.Context, opts BuildOptions) (*Stamp, error) {
	return recipe().Build(ctx, opts)
}

// recipe is how prometheus and promtool are built: from a throwaway module
// that repeats prometheus' own go.mod and requires the prometheus module
// (modbuild.RequiringGoMod: prometheus pins fsnotify back by a replace, for
// instance, which applies only in the main module).
func recipe() modbuild.Recipe[Stamp] {
	return modbuild.Recipe[Stamp]{
		Name:       "prometheus",
		DirEnv:     EnvBinDir,
		CacheDir:   []string{"prometheus", Version},
		Module:     modulePath,
		Version:    ModuleVersion,
		What:       fmt.Sprintf("prometheus and promtool %s (%s@%s)", Version, modulePath, ModuleVersion),
		FirstBuild: "the first build on a machine compiles ~1,400 packages: 3 to 15 minutes on 2 cores, depending on load",
		Download:   "several hundred MB when the module cache is cold",
		Key:        stampKey(),
		Binaries:   []string{PrometheusBinary, PromtoolBinary},
		ToolsGo:    toolsGo,
		Plan: func(_ context.Context, _ *modbuild.Go, published time.Time) (*modbuild.Plan[Stamp], error) {
			return plan(published), nil
		},
	}
}

// plan compiles promtool, then prometheus, with the version ldflags of a
// release build; each must print its release in --version.
func plan(published time.Time) *modbuild.Plan[Stamp] {
	ldflags := versionLDFlags(Version, published)
	var targets []modbuild.Target
	for _, name := range []string{PromtoolBinary, PrometheusBinary} {
		targets = append(targets, modbuild.Target{
			Name:    name,
			Package: modulePath + "/cmd/" + name,
			LDFlags: ldflags,
			Version: fmt.Sprintf("%s, version %s", name, strings.TrimPrefix(Version, "v")),
		})
	}
	return &modbuild.Plan[Stamp]{
		Targets: targets,
		Stamp: func(b modbuild.Built) *Stamp {
			return &Stamp{
				Key:           b.Key,
				Version:       Version,
				ModuleVersion: ModuleVersion,
				GoVersion:     b.GoVersion,
				BuiltAt:       b.BuiltAt,
				BuildSeconds:  b.BuildSeconds,
			}
		},
	}
}

const toolsGo = `//go:build tools

// Package tools pins the commands built by zonetoll tools/prometheus.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
`

// versionLDFlags sets the version variables Prometheus' own release build
// (promu) sets, so `--version` and the build_info metric report the release.
// The revision is not known from the module proxy, so it names the module
// version instead of pretending to be a git commit.
func versionLDFlags(version string, published time.Time) string {
	const pkg = "github.com/prometheus/common/version"
	flags := []string{
		"-s", "-w",
		"-X", pkg + ".Version=" + strings.TrimPrefix(version, "v"),
		"-X", pkg + ".Revision=" + "module-" + ModuleVersion,
		"-X", pkg + ".Branch=" + "release-" + minorOf(version),
		"-X", pkg + ".BuildUser=zonetoll",
		// The module's publish time keeps the build reproducible.
		"-X", pkg + ".BuildDate=" + published.UTC().Format("20060102-15:04:05"),
	}
	return strings.Join(flags, " ")
}

// minorOf turns v3.5.0 into 3.5.
func minorOf(version string) string {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return strings.TrimPrefix(version, "v")
	}
	return parts[0] + "." + parts[1]
}

// tail is shared with the checks.
func tail(s string, n int) string { return modbuild.Tail(s, n) }
