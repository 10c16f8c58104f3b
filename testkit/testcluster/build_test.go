package testcluster

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

const fakeKubernetesGoMod = `module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require (
	k8s.io/api v0.0.0
	go.etcd.io/etcd/server/v3 v3.5.21
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	k8s.io/kube-aggregator => ./staging/src/k8s.io/kube-aggregator
)
`

// builtStamp is the build.json of a real build by the recipe before it moved
// to modbuild; caches holding it must stay current.
const builtStamp = `{
  "key": "kubernetes=v1.33.13 recipe=1",
  "kubernetesVersion": "v1.33.13",
  "etcdVersion": "v3.5.21",
  "goVersion": "go1.26.8",
  "builtAt": "2026-11-23T13:01:46.750835852Z",
  "buildSeconds": 8.983994956
}
`

// TestStampIsStable pins what caches built before this package moved to
// modbuild hold: a change to the key or to the JSON names rebuilds them all.
func TestStampIsStable(t *testing.T) {
	st := Stamp{
		Key:               stampKey(),
		KubernetesVersion: KubernetesVersion,
		EtcdVersion:       "v3.5.21",
		GoVersion:         "go1.26.8",
		BuiltAt:           mustTime(t, "2026-11-23T13:01:46.750835852Z"),
		BuildSeconds:      8.983994956,
	}
	got, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != builtStamp {
		t.Errorf("stamp encodes as\n%s\nbut existing caches hold\n%s", got, builtStamp)
	}
	if r := recipe(); r.Key != st.Key || strings.Join(r.Binaries, " ") != "kube-apiserver etcd" {
		t.Errorf("recipe key %q, binaries %v", r.Key, r.Binaries)
	}
}

func TestBinDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/cache")
	t.Setenv(EnvBinDir, "")
	if got, err := BinDir(); err != nil || got != "/cache/zonetoll/testcluster/k8s-v1.33.13" {
		t.Errorf("BinDir() = %q, %v; want the cache path older builds used", got, err)
	}
	t.Setenv(EnvBinDir, "/opt/k8s")
	if got, err := BinDir(); err != nil || got != "/opt/k8s" {
		t.Errorf("BinDir() with %s set = %q, %v", EnvBinDir, got, err)
	}
}

func TestPlan(t *testing.T) {
	published := mustTime(t, "2026-06-11T16:59:07Z")
	p := plan(published, "v3.5.21")
	want := []modbuild.Target{
		{Name: APIServerBinary, Package: "k8s.io/kubernetes/cmd/kube-apiserver", LDFlags: versionLDFlags(KubernetesVersion, published), Version: "v1.33.13"},
		{Name: EtcdBinary, Package: "go.etcd.io/etcd/server/v3", LDFlags: "-s -w", Version: "3.5.21"},
	}
	if !slices.Equal(p.Targets, want) {
		t.Errorf("targets = %+v, want %+v", p.Targets, want)
	}
	built := modbuild.Built{Key: stampKey(), GoVersion: "go1.26.0", BuiltAt: published, BuildSeconds: 9}
	got := p.Stamp(built)
	wantStamp := Stamp{Key: "kubernetes=v1.33.13 recipe=1", KubernetesVersion: "v1.33.13", EtcdVersion: "v3.5.21", GoVersion: "go1.26.0", BuiltAt: published, BuildSeconds: 9}
	if *got != wantStamp {
		t.Errorf("stamp = %+v, want %+v", *got, wantStamp)
	}
	r := recipe()
	if r.Key != wantStamp.Key || len(r.Binaries) != 2 || r.Binaries[0] != APIServerBinary || r.Binaries[1] != EtcdBinary {
		t.Errorf("recipe key %q, binaries %v", r.Key, r.Binaries)
	}
}

func TestThrowawayGoMod(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{
			name: "staging replaces become published modules",
			in:   fakeKubernetesGoMod,
			want: []string{
				"require k8s.io/kubernetes " + KubernetesVersion,
				"k8s.io/api => k8s.io/api v0.33.13",
				"k8s.io/client-go => k8s.io/client-go v0.33.13",
				"godebug default=go1.24",
			},
		},
		{name: "no staging replaces", in: "module k8s.io/kubernetes\n\ngo 1.24.0\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := throwawayGoMod(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in:\n%s", w, got)
				}
			}
			if strings.Contains(got, "./staging") {
				t.Errorf("staging path left in:\n%s", got)
			}
		})
	}
}

func TestVersionLDFlags(t *testing.T) {
	got := versionLDFlags("v1.33.13", mustTime(t, "2026-06-11T16:59:07Z"))
	for _, want := range []string{
		"-X k8s.io/component-base/version.gitVersion=v1.33.13",
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/component-base/version.gitMinor=33",
		"-X k8s.io/client-go/pkg/version.gitVersion=v1.33.13",
		"-X k8s.io/component-base/version.buildDate=2026-06-11T16:59:07Z",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("ldflags %q lack %q", got, want)
		}
	}
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
