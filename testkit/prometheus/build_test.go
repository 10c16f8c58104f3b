package prometheus

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

func TestVersionLDFlags(t *testing.T) {
	published := time.Date(2025, 7, 14, 16, 17, 9, 0, time.UTC)
	got := versionLDFlags("v3.5.0", published)
	for _, want := range []string{
		"-X github.com/prometheus/common/version.Version=3.5.0 ",
		"-X github.com/prometheus/common/version.Branch=release-3.5 ",
		"-X github.com/prometheus/common/version.Revision=module-" + ModuleVersion + " ",
		"-X github.com/prometheus/common/version.BuildDate=20250714-16:17:09",
	} {
		if !strings.Contains(got+" ", want) {
			t.Errorf("ldflags lack %q: %s", want, got)
		}
	}
}

// builtStamp is the build.json of a real build by the recipe before it moved
// to modbuild; caches holding it must stay current.
const builtStamp = `{
  "key": "prometheus=v3.5.0 module=v0.305.0 recipe=1",
  "version": "v3.5.0",
  "moduleVersion": "v0.305.0",
  "goVersion": "go1.26.8",
  "builtAt": "2026-11-23T13:32:34.677814421Z",
  "buildSeconds": 19.04787981
}
`

// TestStampIsStable pins what caches built before this package moved to
// modbuild hold: a change to the key or to the JSON names rebuilds them all.
func TestStampIsStable(t *testing.T) {
	var st Stamp
	if err := json.Unmarshal([]byte(builtStamp), &st); err != nil {
		t.Fatal(err)
	}
	if st.Key != recipe().Key || st.Version != Version || st.ModuleVersion != ModuleVersion || st.BuildSeconds != 19.04787981 {
		t.Errorf("existing stamp decodes as %+v; recipe key %q", st, recipe().Key)
	}
	got, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != builtStamp {
		t.Errorf("stamp encodes as\n%s\nbut existing caches hold\n%s", got, builtStamp)
	}
}

func TestPlan(t *testing.T) {
	published := time.Date(2025, 7, 14, 16, 17, 9, 0, time.UTC)
	p := plan(published)
	ldflags := versionLDFlags(Version, published)
	want := []modbuild.Target{
		{Name: PromtoolBinary, Package: "github.com/prometheus/prometheus/cmd/promtool", LDFlags: ldflags, Version: "promtool, version 3.5.0"},
		{Name: PrometheusBinary, Package: "github.com/prometheus/prometheus/cmd/prometheus", LDFlags: ldflags, Version: "prometheus, version 3.5.0"},
	}
	if !slices.Equal(p.Targets, want) {
		t.Errorf("targets = %+v, want %+v", p.Targets, want)
	}
	got := p.Stamp(modbuild.Built{Key: stampKey(), GoVersion: "go1.26.0", BuiltAt: published, BuildSeconds: 19})
	wantStamp := Stamp{Key: "prometheus=v3.5.0 module=v0.305.0 recipe=1", Version: "v3.5.0", ModuleVersion: "v0.305.0", GoVersion: "go1.26.0", BuiltAt: published, BuildSeconds: 19}
	if *got != wantStamp {
		t.Errorf("stamp = %+v, want %+v", *got, wantStamp)
	}
}

// TestInstalled: the recipe's cache dir and key, and the paths of both binaries (modbuild tests the rest).
func TestInstalled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBinDir, dir)
	if _, err := Installed(""); err == nil || !strings.Contains(err.Error(), BuildHint) {
		t.Errorf("Installed in an empty dir: %v, want an error naming %q", err, BuildHint)
	}
	for _, name := range []string{PrometheusBinary, PromtoolBinary} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, modbuild.StampFile), []byte(builtStamp), 0o644); err != nil {
		t.Fatal(err)
	}
	want := Binaries{Prometheus: filepath.Join(dir, PrometheusBinary), Promtool: filepath.Join(dir, PromtoolBinary)}
	if bins, err := Installed(""); err != nil || bins != want {
		t.Errorf("Installed = %+v, %v; want %+v", bins, err, want)
	}
}
