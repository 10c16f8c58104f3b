package prometheus

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeGo stands in for the go command so the build logic (caching, locking,
// atomic replacement, verification) is tested offline in milliseconds. It logs
// every call and "builds" shell scripts that print a version line.
const fakeGo = `#!/bin/sh
echo "$*" >> "$FAKEGO_LOG"
case "$1" in
list) printf '{"Path":"github.com/prometheus/prometheus","GoMod":"%s","Time":"2025-07-14T16:17:09Z"}\n' "$FAKEGO_GOMOD" ;;
mod)
	grep -q '^replace github.com/fsnotify/fsnotify v1.8.0 => github.com/fsnotify/fsnotify v1.7.0' go.mod || { echo "bad go.mod" >&2; exit 1; }
	grep -q '_ "github.com/prometheus/prometheus/cmd/promtool"' tools.go || { echo "bad tools.go" >&2; exit 1; } ;;
env) echo go1.26.0 ;;
build)
	out=""; prev=""; pkg=""; ld=""
	for a in "$@"; do
		[ "$prev" = "-o" ] && out="$a"
		[ "$prev" = "-ldflags" ] && ld="$a"
		prev="$a"; pkg="$a"
	done
	case "$ld" in *"version.Version=3.5.0 "*) ;; *) echo "ldflags lack the version: $ld" >&2; exit 1 ;; esac
	sleep "${FAKEGO_SLEEP:-0}"
	printf '#!/bin/sh\necho "%s, version %s (branch: release-3.5)"\n' "${pkg##*/}" "${FAKEGO_VERSION:-3.5.0}" > "$out"
	chmod +x "$out" ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
`

type fakeGoEnv struct{ goCmd, log, binDir string }

func newFakeGo(t *testing.T) fakeGoEnv {
	t.Helper()
	dir := t.TempDir()
	f := fakeGoEnv{goCmd: filepath.Join(dir, "go"), log: filepath.Join(dir, "calls.log"), binDir: filepath.Join(dir, "bin")}
	if err := os.WriteFile(f.goCmd, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	gomod := filepath.Join(dir, "prometheus.mod")
	if err := os.WriteFile(gomod, []byte(fixtureGoMod), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKEGO_LOG", f.log)
	t.Setenv("FAKEGO_GOMOD", gomod)
	return f
}

// calls counts the fake go invocations whose first word is verb.
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

func versionLine(t *testing.T, path string) string {
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
	if st.Key != stampKey() || st.Version != Version || st.ModuleVersion != ModuleVersion || st.GoVersion != "go1.26.0" {
		t.Errorf("stamp = %+v", st)
	}
	bins, err := Installed(f.binDir)
	if err != nil {
		t.Fatalf("after a build: %v", err)
	}
	if got := versionLine(t, bins.Promtool); !strings.HasPrefix(got, "promtool, version 3.5.0") {
		t.Errorf("promtool --version = %q", got)
	}
	if got := versionLine(t, bins.Prometheus); !strings.HasPrefix(got, "prometheus, version 3.5.0") {
		t.Errorf("prometheus --version = %q", got)
	}
	if n := f.calls(t, "build"); n != 2 {
		t.Fatalf("go build ran %d times, want 2", n)
	}

	// A current cache runs no go command at all.
	if _, err := f.build(false); err != nil {
		t.Fatal(err)
	}
	if n := f.calls(t, "build") + f.calls(t, "mod") + f.calls(t, "list"); n != 2+1+1 {
		t.Errorf("a current cache ran the go command again (%d calls in total)", n)
	}

	// A missing binary, or --force, rebuilds.
	if err := os.Remove(bins.Prometheus); err != nil {
		t.Fatal(err)
	}
	if _, err := f.build(false); err != nil {
		t.Fatal(err)
	}
	if n := f.calls(t, "build"); n != 4 {
		t.Errorf("after removing prometheus go build ran %d times in total, want 4", n)
	}
	if _, err := f.build(true); err != nil {
		t.Fatal(err)
	}
	if n := f.calls(t, "build"); n != 6 {
		t.Errorf("force: go build ran %d times in total, want 6", n)
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
	t.Setenv("FAKEGO_VERSION", "3.4.0")
	_, err := f.build(true)
	if err == nil || !strings.Contains(err.Error(), "version 3.5.0") {
		t.Fatalf("build of a wrong version: %v, want a version mismatch error", err)
	}
	bins, err := Installed(f.binDir)
	if err != nil {
		t.Fatalf("the working build is gone: %v", err)
	}
	if got := versionLine(t, bins.Promtool); !strings.HasPrefix(got, "promtool, version 3.5.0") {
		t.Errorf("promtool was replaced by the broken build: %q", got)
	}
	if tmps, _ := filepath.Glob(filepath.Join(f.binDir, ".*.tmp-*")); len(tmps) > 0 {
		t.Errorf("temp binaries left: %v", tmps)
	}
}
