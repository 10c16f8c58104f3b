package testcluster

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

const fakeKubernetesGoMod = `module k8s.io/kubernetes

go 1.26.0

godebug default=go1.26

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

// builtStamp is the build.json the recipe writes; the key is how a cache is
// recognised as current, so a change to it or to the JSON names rebuilds
// every cache.
const builtStamp = `{
  "key": "kubernetes=v1.37.2 recipe=2",
  "kubernetesVersion": "v1.37.2",
  "etcdVersion": "v3.7.0",
  "goVersion": "go1.26.8",
  "builtAt": "2026-12-07T00:40:46.750835852Z",
  "buildSeconds": 8.983994956
}
`

// TestStampIsStable pins what caches hold: a change to the key or to the JSON
// names rebuilds them all.
func TestStampIsStable(t *testing.T) {
	st := Stamp{
		Key:               stampKey("v1.37.2"),
		KubernetesVersion: "v1.37.2",
		EtcdVersion:       "v3.7.0",
		GoVersion:         "go1.26.8",
		BuiltAt:           mustTime(t, "2026-12-07T00:40:46.750835852Z"),
		BuildSeconds:      8.983994956,
	}
	got, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if string(got)+"\n" != builtStamp {
		t.Errorf("stamp encodes as\n%s\nbut existing caches hold\n%s", got, builtStamp)
	}
	if r := recipe("v1.37.2"); r.Key != st.Key || strings.Join(r.Binaries, " ") != "kube-apiserver etcd kubectl" {
		t.Errorf("recipe key %q, binaries %v", r.Key, r.Binaries)
	}
}

func TestBinDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/cache")
	tests := []struct {
		name, binDirEnv, versionEnv string
		want                        string
		wantErr                     bool
	}{
		{name: "default: newest release", want: "/cache/zonetoll/testcluster/k8s-" + KubernetesVersion},
		{name: "oldest", versionEnv: "oldest", want: "/cache/zonetoll/testcluster/k8s-" + OldestKubernetesVersion},
		{name: "newest", versionEnv: "newest", want: "/cache/zonetoll/testcluster/k8s-" + KubernetesVersion},
		{name: "a release", versionEnv: "v1.36.3", want: "/cache/zonetoll/testcluster/k8s-v1.36.3"},
		{name: "not a release", versionEnv: "1.36", wantErr: true},
		{name: "bin dir wins", binDirEnv: "/opt/k8s", versionEnv: "oldest", want: "/opt/k8s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvBinDir, tt.binDirEnv)
			t.Setenv(EnvVersion, tt.versionEnv)
			got, err := BinDir()
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("BinDir() = %q, %v; want %q (error: %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestBuildVersionRejectsNonReleases(t *testing.T) {
	for _, v := range []string{"", "oldest", "1.37.2", "v1.37", "v1.37.2; rm -rf /"} {
		if _, err := BuildVersion(t.Context(), v, BuildOptions{BinDir: t.TempDir(), GoCommand: "/nonexistent/go"}); err == nil ||
			!strings.Contains(err.Error(), "is not a Kubernetes release") {
			t.Errorf("BuildVersion(%q) = %v, want a refusal before anything runs", v, err)
		}
	}
}

func TestPlan(t *testing.T) {
	published := mustTime(t, "2026-10-27T12:01:04Z")
	for _, tt := range []struct{ version, etcd, etcdPrint string }{
		{"v1.37.2", "v3.7.0", "3.7.0"},
		{"v1.35.4", "v3.6.5", "3.6.5"},
	} {
		t.Run(tt.version, func(t *testing.T) {
			p := plan(tt.version, published, tt.etcd)
			want := []modbuild.Target{
				{Name: APIServerBinary, Package: "k8s.io/kubernetes/cmd/kube-apiserver", LDFlags: versionLDFlags(tt.version, published), Version: tt.version},
				{Name: EtcdBinary, Package: "go.etcd.io/etcd/server/v3", LDFlags: "-s -w", Version: tt.etcdPrint},
				{Name: KubectlBinary, Package: "k8s.io/kubernetes/cmd/kubectl", LDFlags: versionLDFlags(tt.version, published),
					Version: "Client Version: " + tt.version, VersionArgs: "version --client"},
			}
			if !slices.Equal(p.Targets, want) {
				t.Errorf("targets = %+v, want %+v", p.Targets, want)
			}
			built := modbuild.Built{Key: stampKey(tt.version), GoVersion: "go1.26.0", BuiltAt: published, BuildSeconds: 9}
			got := p.Stamp(built)
			wantStamp := Stamp{Key: "kubernetes=" + tt.version + " recipe=2", KubernetesVersion: tt.version, EtcdVersion: tt.etcd,
				GoVersion: "go1.26.0", BuiltAt: published, BuildSeconds: 9}
			if *got != wantStamp {
				t.Errorf("stamp = %+v, want %+v", *got, wantStamp)
			}
			r := recipe(tt.version)
			if r.Key != wantStamp.Key || !slices.Equal(r.Binaries, []string{APIServerBinary, EtcdBinary, KubectlBinary}) {
				t.Errorf("recipe key %q, binaries %v", r.Key, r.Binaries)
			}
			for _, b := range r.Binaries {
				if !strings.Contains(r.ToolsGo, strconv.Quote(targetOf(t, p, b).Package)) {
					t.Errorf("tools.go does not import %s's package", b)
				}
			}
		})
	}
}

func targetOf(t *testing.T, p *modbuild.Plan[Stamp], name string) modbuild.Target {
	t.Helper()
	for _, tg := range p.Targets {
		if tg.Name == name {
			return tg
		}
	}
	t.Fatalf("no target %s", name)
	return modbuild.Target{}
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
				"require k8s.io/kubernetes v1.37.2",
				"k8s.io/api => k8s.io/api v0.37.2",
				"k8s.io/client-go => k8s.io/client-go v0.37.2",
				"godebug default=go1.26",
				// kubernetes' own go line: tidy refuses a lower one.
				"\ngo 1.26.0\n",
			},
		},
		{name: "no staging replaces", in: "module k8s.io/kubernetes\n\ngo 1.24.0\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := throwawayGoMod("v1.37.2", tt.in)
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
