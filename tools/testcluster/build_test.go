package testcluster

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeGo stands in for the go command so the build logic (caching, locking,
// atomic replacement, verification) is tested in milliseconds and offline.
// It logs every invocation and "builds" shell scripts that print a version.
const fakeGo = `#!/bin/sh
echo "$*" >> "$FAKEGO_LOG"
case "$1" in
list)
	if [ "$3" = "-json" ]; then
		printf '{"Path":"k8s.io/kubernetes","GoMod":"%s","Time":"2026-06-11T16:59:07Z"}\n' "$FAKEGO_GOMOD"
	else
		echo v3.5.21
	fi ;;
mod)
	grep -q 'k8s.io/api => k8s.io/api v0.33.13' go.mod || { echo "bad go.mod" >&2; exit 1; }
	grep -q '_ "k8s.io/kubernetes/cmd/kube-apiserver"' tools.go || { echo "bad tools.go" >&2; exit 1; } ;;
env) echo go1.26.0 ;;
build)
	out=""; prev=""; pkg=""
	for a in "$@"; do
		[ "$prev" = "-o" ] && out="$a"
		prev="$a"; pkg="$a"
	done
	sleep "${FAKEGO_SLEEP:-0}"
	case "$pkg" in
	*kube-apiserver) v="Kubernetes ${FAKEGO_K8S_VERSION:-v1.33.13}" ;;
	*) v="etcd Version: 3.5.21" ;;
	esac
	printf '#!/bin/sh\necho "%s"\n' "$v" > "$out"
	chmod +x "$out" ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
`

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

type fakeGoEnv struct {
	goCmd, log, binDir string
}

func newFakeGo(t *testing.T) fakeGoEnv {
	t.Helper()
	dir := t.TempDir()
	env := fakeGoEnv{goCmd: filepath.Join(dir, "go"), log: filepath.Join(dir, "calls.log"), binDir: filepath.Join(dir, "bin")}
	if err := os.WriteFile(env.goCmd, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := filepath.Join(dir, "kubernetes.mod")
	if err := os.WriteFile(gomod, []byte(fakeKubernetesGoMod), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKEGO_LOG", env.log)
	t.Setenv("FAKEGO_GOMOD", gomod)
	return env
}

// calls returns the fake go invocations whose first word is verb.
func (f fakeGoEnv) calls(t *testing.T, verb string) int {
	t.Helper()
	data, err := os.ReadFile(f.log)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, verb+" ") {
			n++
		}
	}
	return n
}

func (f fakeGoEnv) build(force bool) (*Stamp, error) {
	return Build(context.Background(), BuildOptions{BinDir: f.binDir, GoCommand: f.goCmd, Force: force})
}

func binaryOutput(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("running %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

func TestBuildCachesByVersionKey(t *testing.T) {
	f := newFakeGo(t)
	st, err := f.build(false)
	if err != nil {
		t.Fatal(err)
	}
	if st.EtcdVersion != "v3.5.21" || st.KubernetesVersion != KubernetesVersion || st.Key != stampKey() {
		t.Errorf("stamp = %+v", st)
	}
	if got := binaryOutput(t, filepath.Join(f.binDir, APIServerBinary)); got != "Kubernetes v1.33.13" {
		t.Errorf("kube-apiserver --version = %q", got)
	}
	if n := f.calls(t, "build"); n != 2 {
		t.Fatalf("go build ran %d times, want 2", n)
	}
	gomod, err := os.ReadFile(filepath.Join(f.binDir, "src", "go.mod"))
	if err != nil {
		t.Fatalf("throwaway module not in the cache dir: %v", err)
	}
	if !strings.Contains(string(gomod), "k8s.io/kube-aggregator => k8s.io/kube-aggregator v0.33.13") {
		t.Errorf("throwaway go.mod:\n%s", gomod)
	}

	// Current cache: no go command at all.
	before := f.calls(t, "list") + f.calls(t, "mod") + f.calls(t, "build")
	if _, err := f.build(false); err != nil {
		t.Fatal(err)
	}
	if after := f.calls(t, "list") + f.calls(t, "mod") + f.calls(t, "build"); after != before {
		t.Errorf("a current cache ran the go command %d more times", after-before)
	}

	// A stamp from another version key triggers a rebuild.
	stale := *st
	stale.Key = "kubernetes=v1.32.0 recipe=1"
	data, _ := json.Marshal(stale)
	if err := os.WriteFile(filepath.Join(f.binDir, stampFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.build(false); err != nil {
		t.Fatal(err)
	}
	if n := f.calls(t, "build"); n != 4 {
		t.Errorf("after a key change go build ran %d times in total, want 4", n)
	}

	// A missing binary triggers a rebuild too.
	if err := os.Remove(filepath.Join(f.binDir, EtcdBinary)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.build(false); err != nil {
		t.Fatal(err)
	}
	if n := f.calls(t, "build"); n != 6 {
		t.Errorf("after removing etcd go build ran %d times in total, want 6", n)
	}
	if _, err := f.build(true); err != nil {
		t.Fatal(err)
	}
	if n := f.calls(t, "build"); n != 8 {
		t.Errorf("--force: go build ran %d times in total, want 8", n)
	}
}

func TestConcurrentBuildsBuildOnce(t *testing.T) {
	f := newFakeGo(t)
	t.Setenv("FAKEGO_SLEEP", "1") // keep the first build busy while the others wait on the lock
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.build(false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls(t, "build"); n != 2 {
		t.Errorf("3 concurrent builds ran go build %d times, want 2 (one build)", n)
	}
}

func TestBrokenBuildKeepsWorkingBinaries(t *testing.T) {
	f := newFakeGo(t)
	if _, err := f.build(false); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKEGO_K8S_VERSION", "v1.32.0")
	_, err := f.build(true)
	if err == nil || !strings.Contains(err.Error(), "want it to mention "+KubernetesVersion) {
		t.Fatalf("build of a wrong version: %v, want a version mismatch error", err)
	}
	if got := binaryOutput(t, filepath.Join(f.binDir, APIServerBinary)); got != "Kubernetes v1.33.13" {
		t.Errorf("kube-apiserver was replaced by the broken build: %q", got)
	}
	if tmps, _ := filepath.Glob(filepath.Join(f.binDir, ".*.tmp-*")); len(tmps) > 0 {
		t.Errorf("temp binaries left: %v", tmps)
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
