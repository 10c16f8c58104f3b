// Package vmagent builds upstream vmagent (VictoriaMetrics) from the Go module
// proxy, so the per-zone vmagent example is run by the real program rather than
// only checked by an emulation with promtool.
package vmagent

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// Version is the VictoriaMetrics release built; its Go module version is the
// same tag.
const (
	Version    = "v1.151.0"
	modulePath = "github.com/VictoriaMetrics/VictoriaMetrics"
	pkgPath    = modulePath + "/app/vmagent"
)

// buildRecipe changes whenever the way the binary is built changes (flags,
// ldflags, layout), so caches built by an older recipe are rebuilt.
const buildRecipe = 1

// EnvBinDir overrides the directory holding vmagent.
const EnvBinDir = "ZONETOLL_VMAGENT_BIN_DIR"

// Binary is the binary's name inside the bin dir.
const Binary = "vmagent"

// BuildHint is the command that fills the bin dir.
const BuildHint = "run `make testcluster` (or `cd testkit && go run ./cmd/vmagent build`)"

// BinDir returns the directory holding the binary: $ZONETOLL_VMAGENT_BIN_DIR
// if set, else <user cache dir>/zonetoll/vmagent/<version>.
func BinDir() (string, error) { return recipe().Dir() }

// Installed returns the path of vmagent in dir (BinDir() when empty) if a
// build of the current version key is complete there, and an error naming
// BuildHint otherwise.
func Installed(dir string) (string, error) {
	dir, err := recipe().Installed(dir, BuildHint)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, Binary), nil
}

// Stamp records what a build produced; it is written after the binary is in
// place, so its presence with the current key means the cache is complete.
type Stamp struct {
	Key          string    `json:"key"`
	Version      string    `json:"version"`
	GoVersion    string    `json:"goVersion"`
	BuiltAt      time.Time `json:"builtAt"`
	BuildSeconds float64   `json:"buildSeconds"`
}

func stampKey() string { return fmt.Sprintf("vmagent=%s recipe=%d", Version, buildRecipe) }

// BuildOptions configures Build: BinDir (empty means BinDir()), Force,
// Progress and GoCommand.
type BuildOptions = modbuild.Options

// Build makes vmagent from the Go module proxy unless the bin dir already
// holds a binary of the current version key. It is safe to run concurrently
// (modbuild: a file lock, and the binary renamed into place only once its
// -version is right).
func Build(ctx context.Context, opts BuildOptions) (*Stamp, error) {
	return recipe().Build(ctx, opts)
}

// recipe builds app/vmagent from a throwaway module that repeats
// VictoriaMetrics' own go.mod (go 1.26.6 in v1.151.0, so Go 1.26.6 or newer)
// and requires it.
func recipe() modbuild.Recipe[Stamp] {
	return modbuild.Recipe[Stamp]{
		Name:       "vmagent",
		DirEnv:     EnvBinDir,
		CacheDir:   []string{"vmagent", Version},
		Module:     modulePath,
		Version:    Version,
		What:       fmt.Sprintf("vmagent %s (%s)", Version, pkgPath),
		FirstBuild: "the first build on a machine compiles ~400 packages, about 100 CPU-seconds: 1 to 5 minutes on 2 cores, depending on load",
		Download:   "20 modules, about 200 MB unpacked, when the module cache is cold",
		Key:        stampKey(),
		Binaries:   []string{Binary},
		ToolsGo:    toolsGo,
		Plan: func(_ context.Context, _ *modbuild.Go, published time.Time) (*modbuild.Plan[Stamp], error) {
			return plan(published), nil
		},
	}
}

func plan(published time.Time) *modbuild.Plan[Stamp] {
	return &modbuild.Plan[Stamp]{
		Targets: []modbuild.Target{{
			Name:    Binary,
			Package: pkgPath,
			LDFlags: versionLDFlags(published),
			// vmagent prints only lib/buildinfo.Version for -version.
			Version:     Version,
			VersionArgs: "-version",
		}},
		Stamp: func(b modbuild.Built) *Stamp {
			return &Stamp{Key: b.Key, Version: Version, GoVersion: b.GoVersion, BuiltAt: b.BuiltAt, BuildSeconds: b.BuildSeconds}
		},
	}
}

const toolsGo = `//go:build tools

// Package tools pins the command built by zonetoll testkit/vmagent.
package tools

import (
	_ "github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent"
)
`

// versionLDFlags sets lib/buildinfo.Version the way VictoriaMetrics' Makefile
// does (vmagent-<date>-<time>-<tag>), with the module's publish time for the
// date so the build is reproducible; the git part names the module instead of
// pretending to be a commit. vmagent reports it in -version, in
// vm_app_version and in its logs.
func versionLDFlags(published time.Time) string {
	v := fmt.Sprintf("vmagent-%s-tags-%s-0-module", published.UTC().Format("20060102-150405"), Version)
	return strings.Join([]string{"-s", "-w", "-X", modulePath + "/lib/buildinfo.Version=" + v}, " ")
}
