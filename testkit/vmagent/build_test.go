package vmagent

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

func TestPlan(t *testing.T) {
	published := time.Date(2026, 8, 28, 13, 46, 29, 0, time.UTC)
	p := plan(published)
	want := []modbuild.Target{{
		Name:    Binary,
		Package: "github.com/VictoriaMetrics/VictoriaMetrics/app/vmagent",
		LDFlags: "-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=vmagent-20260828-134629-tags-v1.151.0-0-module",
		// What -version must print, and what vmagent reads its short
		// version (vm_app_version{short_version}) from.
		Version:     "v1.151.0",
		VersionArgs: "-version",
	}}
	if !slices.Equal(p.Targets, want) {
		t.Errorf("targets = %+v, want %+v", p.Targets, want)
	}
	if !strings.Contains(toolsGo, `"`+want[0].Package+`"`) {
		t.Errorf("tools.go does not import %s", want[0].Package)
	}
	got := p.Stamp(modbuild.Built{Key: stampKey(), GoVersion: "go1.26.8", BuiltAt: published, BuildSeconds: 300})
	wantStamp := Stamp{Key: "vmagent=v1.151.0 recipe=1", Version: Version, GoVersion: "go1.26.8", BuiltAt: published, BuildSeconds: 300}
	if *got != wantStamp {
		t.Errorf("stamp = %+v, want %+v", *got, wantStamp)
	}
}

// TestInstalled: the recipe's cache dir and key, and the path of the binary (modbuild tests the rest).
func TestInstalled(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvBinDir, dir)
	if _, err := Installed(""); err == nil || !strings.Contains(err.Error(), BuildHint) {
		t.Errorf("Installed in an empty dir: %v, want an error naming %q", err, BuildHint)
	}
	if err := os.WriteFile(filepath.Join(dir, Binary), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(Stamp{Key: stampKey(), Version: Version})
	if err := os.WriteFile(filepath.Join(dir, modbuild.StampFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if bin, err := Installed(""); err != nil || bin != filepath.Join(dir, Binary) {
		t.Errorf("Installed = %q, %v; want %s", bin, err, filepath.Join(dir, Binary))
	}
}
