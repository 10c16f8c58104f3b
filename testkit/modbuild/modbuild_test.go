package modbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeGo stands in for the go command so the build logic (caching, locking,
// atomic replacement, verification) is tested offline in milliseconds. It logs
// every call, checks the throwaway module the recipe wrote, and "builds" shell
// scripts whose --version prints the package name and the ldflags.
const fakeGo = `#!/bin/sh
echo "$*" >> "$FAKEGO_LOG"
case "$1" in
list)
	if [ "$3" = "-json" ]; then
		printf '{"Path":"example.com/upstream","GoMod":"%s","Time":"2025-07-14T16:17:09Z"}\n' "$FAKEGO_GOMOD"
	else
		echo v0.9.0
	fi ;;
mod)
	grep -q '^require example.com/upstream v1.2.3$' go.mod || { echo "bad go.mod" >&2; exit 1; }
	grep -q '_ "example.com/upstream/cmd/alpha"' tools.go || { echo "bad tools.go" >&2; exit 1; } ;;
env) echo go1.26.0 ;;
build)
	out=""; prev=""; pkg=""; ld=""
	for a in "$@"; do
		[ "$prev" = "-o" ] && out="$a"
		[ "$prev" = "-ldflags" ] && ld="$a"
		prev="$a"; pkg="$a"
	done
	if [ -n "$FAKEGO_FAIL" ]; then echo "$FAKEGO_FAIL" >&2; exit 2; fi
	sleep "${FAKEGO_SLEEP:-0}"
	printf '#!/bin/sh\necho "%s %s"\n' "${pkg##*/}" "${FAKEGO_PRINT:-$ld}" > "$out"
	chmod +x "$out" ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
`

const upstreamGoMod = "module example.com/upstream\n\ngo 1.24.0\n"

// testStamp has the shape of a recipe's stamp: the key, the recipe's own
// facts and the shared build facts.
type testStamp struct {
	Key          string    `json:"key"`
	Dep          string    `json:"dep"`
	GoVersion    string    `json:"goVersion"`
	BuiltAt      time.Time `json:"builtAt"`
	BuildSeconds float64   `json:"buildSeconds"`
}

const testKey = "upstream=v1.2.3 recipe=1"

// wantVersion is what the fake binaries must print: the ldflags carry the
// upstream's publish time, so this also checks that it reached the plan.
const wantVersion = "-X main.version=v1.2.3 -X main.date=2025-07-14T16:17:09Z"

func testRecipe() Recipe[testStamp] {
	return Recipe[testStamp]{
		Name:       "upstream",
		Module:     "example.com/upstream",
		Version:    "v1.2.3",
		What:       "alpha and beta",
		FirstBuild: "a moment",
		Download:   "nothing",
		Key:        testKey,
		Binaries:   []string{"alpha", "beta"},
		GoMod: func(upstream string) (string, error) {
			if !strings.HasPrefix(upstream, "module example.com/upstream\n") {
				return "", errors.New("not the upstream go.mod")
			}
			return "module zonetoll.local/upstream-build\n\nrequire example.com/upstream v1.2.3\n", nil
		},
		ToolsGo: "//go:build tools\n\npackage tools\n\nimport (\n\t_ \"example.com/upstream/cmd/alpha\"\n\t_ \"example.com/upstream/cmd/beta\"\n)\n",
		Plan: func(ctx context.Context, g *Go, published time.Time) (*Plan[testStamp], error) {
			dep, err := g.Run(ctx, "finding the dep", "list", "-m", "-f", "{{.Version}}", "example.com/dep")
			if err != nil {
				return nil, err
			}
			ldflags := "-X main.version=v1.2.3 -X main.date=" + published.UTC().Format(time.RFC3339)
			var targets []Target
			for _, name := range []string{"alpha", "beta"} {
				targets = append(targets, Target{Name: name, Package: "example.com/upstream/cmd/" + name, LDFlags: ldflags, Version: wantVersion})
			}
			return &Plan[testStamp]{
				Targets: targets,
				Stamp: func(b Built) *testStamp {
					return &testStamp{Key: b.Key, Dep: strings.TrimSpace(dep), GoVersion: b.GoVersion, BuiltAt: b.BuiltAt, BuildSeconds: b.BuildSeconds}
				},
			}, nil
		},
	}
}

type fakeGoEnv struct{ goCmd, log, gomod, dir string }

func newFakeGo(t *testing.T) fakeGoEnv {
	t.Helper()
	tmp := t.TempDir()
	f := fakeGoEnv{goCmd: filepath.Join(tmp, "go"), log: filepath.Join(tmp, "calls.log"), gomod: filepath.Join(tmp, "upstream.mod"), dir: filepath.Join(tmp, "bin")}
	if err := os.WriteFile(f.goCmd, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.gomod, []byte(upstreamGoMod), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKEGO_LOG", f.log)
	t.Setenv("FAKEGO_GOMOD", f.gomod)
	return f
}

// calls counts the fake go invocations whose first word is verb ("" counts all).
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
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l != "" && strings.HasPrefix(l, verb) {
			n++
		}
	}
	return n
}

func (f fakeGoEnv) build(r Recipe[testStamp], force bool) (*testStamp, error) {
	return r.Build(context.Background(), Options{BinDir: f.dir, GoCommand: f.goCmd, Force: force})
}

func versionLine(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("running %s: %v", path, err)
	}
	return strings.TrimSpace(string(out))
}

// checkWorking fails t unless dir holds a current build whose binaries print
// the right version, and nothing half-done is left beside them.
func checkWorking(t *testing.T, dir string) *testStamp {
	t.Helper()
	st, err := testRecipe().Current(dir)
	if err != nil {
		t.Fatalf("no current build in %s: %v", dir, err)
	}
	for _, name := range []string{"alpha", "beta"} {
		if got, want := versionLine(t, filepath.Join(dir, name)), name+" "+wantVersion; got != want {
			t.Errorf("%s --version = %q, want %q", name, got, want)
		}
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".*.tmp-*")); len(tmps) > 0 {
		t.Errorf("temp binaries left: %v", tmps)
	}
	return st
}

func writeStampKey(t *testing.T, dir, key string) {
	t.Helper()
	data, err := json.Marshal(testStamp{Key: key, Dep: "v0.9.0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, StampFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name string
		// built: a good build is in the dir before the case runs.
		built bool
		// setup changes the dir (after the good build, if any).
		setup  func(t *testing.T, dir string)
		recipe func(r *Recipe[testStamp])
		env    map[string]string
		force  bool
		// wantBuilds is how many go build calls the case makes; 0 means no go
		// command runs at all.
		wantBuilds int
		wantErr    string
	}{
		{name: "empty dir builds both binaries", wantBuilds: 2},
		{name: "current cache runs no go command", built: true, wantBuilds: 0},
		{
			name: "stamp of another key rebuilds", built: true, wantBuilds: 2,
			setup: func(t *testing.T, dir string) { writeStampKey(t, dir, "upstream=v1.2.2 recipe=1") },
		},
		{
			name: "corrupt stamp rebuilds", built: true, wantBuilds: 2,
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Join(dir, StampFile), []byte("{"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "missing binary rebuilds", built: true, wantBuilds: 2,
			setup: func(t *testing.T, dir string) {
				if err := os.Remove(filepath.Join(dir, "beta")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "binary that is not executable rebuilds", built: true, wantBuilds: 2,
			setup: func(t *testing.T, dir string) {
				if err := os.Chmod(filepath.Join(dir, "alpha"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
		{name: "force rebuilds a current cache", built: true, force: true, wantBuilds: 2},
		{
			name: "binary printing the wrong version keeps the working build", built: true, force: true,
			env:        map[string]string{"FAKEGO_PRINT": "-X main.version=v1.2.2"},
			wantBuilds: 1, wantErr: `alpha --version printed "alpha -X main.version=v1.2.2", want it to contain "` + wantVersion + `"`,
		},
		{
			name: "failing compile keeps the working build and shows go's stderr", built: true, force: true,
			env:        map[string]string{"FAKEGO_FAIL": "cmd/alpha/main.go:3: undefined: x"},
			wantBuilds: 1, wantErr: "compiling alpha: go build -trimpath -ldflags " + wantVersion + " -o ",
		},
		{
			name:       "failing compile on an empty dir leaves no stamp",
			env:        map[string]string{"FAKEGO_FAIL": "cmd/alpha/main.go:3: undefined: x"},
			wantBuilds: 1, wantErr: "cmd/alpha/main.go:3: undefined: x",
		},
		{
			name: "recipe rejecting the upstream go.mod", wantBuilds: 0, wantErr: "not the upstream go.mod",
			recipe: func(r *Recipe[testStamp]) { r.Module = "example.com/other" },
			setup: func(t *testing.T, _ string) {
				if err := os.WriteFile(os.Getenv("FAKEGO_GOMOD"), []byte("module example.com/other\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "target missing from tools.go", wantBuilds: 0, wantErr: "tools.go does not import example.com/upstream/cmd/beta",
			recipe: func(r *Recipe[testStamp]) {
				r.ToolsGo = strings.Replace(r.ToolsGo, "\t_ \"example.com/upstream/cmd/beta\"\n", "", 1)
			},
		},
		{
			name: "stamp without the key is refused", wantBuilds: 2, wantErr: `stamp records key "", want "` + testKey + `"`,
			recipe: func(r *Recipe[testStamp]) {
				plan := r.Plan
				r.Plan = func(ctx context.Context, g *Go, published time.Time) (*Plan[testStamp], error) {
					p, err := plan(ctx, g, published)
					if err != nil {
						return nil, err
					}
					stamp := p.Stamp
					p.Stamp = func(b Built) *testStamp {
						st := stamp(b)
						st.Key = ""
						return st
					}
					return p, nil
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeGo(t)
			var before *testStamp
			if tt.built {
				if _, err := f.build(testRecipe(), false); err != nil {
					t.Fatalf("first build: %v", err)
				}
				before = checkWorking(t, f.dir)
			}
			if tt.setup != nil {
				tt.setup(t, f.dir)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			r := testRecipe()
			if tt.recipe != nil {
				tt.recipe(&r)
			}
			callsBefore, buildsBefore := f.calls(t, ""), f.calls(t, "build ")

			st, err := f.build(r, tt.force)

			if builds := f.calls(t, "build ") - buildsBefore; builds != tt.wantBuilds {
				t.Errorf("go build ran %d times, want %d", builds, tt.wantBuilds)
			}
			if tt.wantBuilds == 0 && tt.wantErr == "" {
				if n := f.calls(t, "") - callsBefore; n != 0 {
					t.Errorf("the go command ran %d times, want none", n)
				}
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Build() error = %v, want one containing %q", err, tt.wantErr)
				}
				if before == nil {
					if _, err := os.Stat(filepath.Join(f.dir, StampFile)); !errors.Is(err, os.ErrNotExist) {
						t.Errorf("a failed first build left a stamp (stat: %v)", err)
					}
					return
				}
				if after := checkWorking(t, f.dir); !after.BuiltAt.Equal(before.BuiltAt) {
					t.Errorf("a failed build replaced the stamp: %+v, was %+v", after, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := testStamp{Key: testKey, Dep: "v0.9.0", GoVersion: "go1.26.0"}
			if got := (testStamp{Key: st.Key, Dep: st.Dep, GoVersion: st.GoVersion}); got != want {
				t.Errorf("stamp = %+v, want %+v", got, want)
			}
			onDisk := checkWorking(t, f.dir)
			if !onDisk.BuiltAt.Equal(st.BuiltAt) || onDisk.Key != st.Key {
				t.Errorf("Build returned %+v but the stamp on disk is %+v", st, onDisk)
			}
			if tt.wantBuilds > 0 && before != nil && onDisk.BuiltAt.Equal(before.BuiltAt) {
				t.Errorf("a rebuild kept the old stamp %+v", before)
			}
		})
	}
}

func TestConcurrentBuildsBuildOnce(t *testing.T) {
	f := newFakeGo(t)
	t.Setenv("FAKEGO_SLEEP", "1") // keep the first build busy while the others wait on the lock
	var wg sync.WaitGroup
	stamps := make([]*testStamp, 3)
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stamps[i], errs[i] = f.build(testRecipe(), false)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.calls(t, "build "); n != 2 {
		t.Errorf("3 concurrent builds ran go build %d times, want 2 (one build)", n)
	}
	for i, st := range stamps[1:] {
		if !st.BuiltAt.Equal(stamps[0].BuiltAt) {
			t.Errorf("build %d returned a stamp of another build: %+v, want %+v", i+1, st, stamps[0])
		}
	}
	checkWorking(t, f.dir)
}

func TestBuildGivesUpWaitingForTheLock(t *testing.T) {
	f := newFakeGo(t)
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Another process's build holds the lock for the whole test.
	lock, err := os.OpenFile(filepath.Join(f.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var progress bytes.Buffer
	_, err = testRecipe().Build(ctx, Options{BinDir: f.dir, GoCommand: f.goCmd, Progress: &progress})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Build() with the lock held and a cancelled context = %v, want context.Canceled", err)
	}
	if !strings.Contains(progress.String(), "upstream: another build holds") {
		t.Errorf("progress does not say it waits for the lock:\n%s", progress.String())
	}
	if n := f.calls(t, ""); n != 0 {
		t.Errorf("the go command ran %d times without the lock", n)
	}
}

func TestBuildDefaultsToTheRecipeDir(t *testing.T) {
	f := newFakeGo(t)
	t.Setenv("ZONETOLL_MODBUILD_TEST_DIR", f.dir)
	r := testRecipe()
	r.DirEnv = "ZONETOLL_MODBUILD_TEST_DIR"
	if _, err := r.Build(context.Background(), Options{GoCommand: f.goCmd}); err != nil {
		t.Fatal(err)
	}
	checkWorking(t, f.dir)
}

func TestDir(t *testing.T) {
	tests := []struct {
		name, env, cache, want string
	}{
		{name: "env wins", env: "/opt/bins", cache: "/cache", want: "/opt/bins"},
		{name: "relative env is made absolute", env: "bins", cache: "/cache", want: "ABS:bins"},
		{name: "user cache dir", cache: "/cache", want: "/cache/zonetoll/tool/v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("ZONETOLL_MODBUILD_TEST_DIR", tt.env)
			t.Setenv("XDG_CACHE_HOME", tt.cache)
			want := tt.want
			if rel, ok := strings.CutPrefix(want, "ABS:"); ok {
				wd, err := os.Getwd()
				if err != nil {
					t.Fatal(err)
				}
				want = filepath.Join(wd, rel)
			}
			r := Recipe[testStamp]{DirEnv: "ZONETOLL_MODBUILD_TEST_DIR", CacheDir: []string{"tool", "v1"}}
			got, err := r.Dir()
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("Dir() = %q, want %q", got, want)
			}
		})
	}
}

// TestInstalled: only a complete build of the current key is installed; anything else is an error that
// says what is missing and how to build it.
func TestInstalled(t *testing.T) {
	r := testRecipe()
	writeBins := func(t *testing.T, dir string, mode os.FileMode) {
		for _, name := range r.Binaries {
			if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeStampKey := func(t *testing.T, dir, key string) {
		if err := os.WriteFile(filepath.Join(dir, StampFile), []byte(`{"key":"`+key+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr bool
	}{
		{"empty dir", func(*testing.T, string) {}, true},
		{"binaries without stamp", func(t *testing.T, dir string) { writeBins(t, dir, 0o755) }, true},
		{"stamp of an older recipe", func(t *testing.T, dir string) {
			writeBins(t, dir, 0o755)
			writeStampKey(t, dir, "upstream=v1.2.2 recipe=1")
		}, true},
		{"stamp without binaries", func(t *testing.T, dir string) { writeStampKey(t, dir, testKey) }, true},
		{"binaries not executable", func(t *testing.T, dir string) {
			writeBins(t, dir, 0o644)
			writeStampKey(t, dir, testKey)
		}, true},
		{"complete", func(t *testing.T, dir string) {
			writeBins(t, dir, 0o755)
			writeStampKey(t, dir, testKey)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			got, err := r.Installed(dir, "run the build")
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "run the build") || !strings.Contains(err.Error(), "alpha and beta") {
					t.Errorf("Installed(%s) = %q, %v; want an error naming what and how to build", dir, got, err)
				}
				return
			}
			if err != nil || got != dir {
				t.Errorf("Installed(%s) = %q, %v; want the dir", dir, got, err)
			}
		})
	}
}

func TestCheckExecutable(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		path     string
		wantErr  bool
		notExist bool
	}{
		{name: "executable", path: write("x", 0o755)},
		{name: "not executable", path: write("y", 0o644), wantErr: true},
		{name: "directory", path: dir, wantErr: true},
		{name: "missing", path: filepath.Join(dir, "z"), wantErr: true, notExist: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckExecutable(tt.path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CheckExecutable(%s) = %v, wantErr %v", tt.path, err, tt.wantErr)
			}
			if errors.Is(err, os.ErrNotExist) != tt.notExist {
				t.Errorf("CheckExecutable(%s) = %v, want os.ErrNotExist: %v", tt.path, err, tt.notExist)
			}
		})
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{in: "a\nb\nc\n", n: 2, want: "b\nc"},
		{in: "a\nb\nc", n: 5, want: "a\nb\nc"},
		{in: "", n: 3, want: ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d", tt.in, tt.n), func(t *testing.T) {
			if got := Tail(tt.in, tt.n); got != tt.want {
				t.Errorf("Tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

// TestCheckVersion runs a binary that answers only to the arguments its
// target names, as kubectl prints its version only for `version --client`.
func TestCheckVersion(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tool")
	script := "#!/bin/sh\nif [ \"$*\" = \"version --client\" ]; then echo 'Client Version: v1.2.3'; exit 0; fi\necho \"unknown flag: $*\" >&2; exit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		want    string
		args    string
		wantErr string
	}{
		{name: "its own arguments", want: "v1.2.3", args: "version --client"},
		{name: "default --version refused", want: "v1.2.3", wantErr: "running tool --version: exit status 1: unknown flag: --version"},
		{name: "wrong version", want: "v1.2.4", args: "version --client", wantErr: `tool version --client printed "Client Version: v1.2.3", want it to contain "v1.2.4"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkVersion(t.Context(), bin, "tool", tt.want, tt.args)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("checkVersion: %v", err)
			}
			if tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Fatalf("checkVersion error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRequiringGoMod(t *testing.T) {
	const upstream = "module example.com/up\n\ngo 1.26.6\n\nrequire example.com/dep v1.2.3\n\nexclude example.com/bad v1.0.0\n\nreplace example.com/dep v1.2.3 => example.com/dep v1.2.2\n"
	got, err := RequiringGoMod(upstream, "example.com/up", "v1.0.0", "zonetoll.local/up-build")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"module zonetoll.local/up-build\n", "\ngo 1.26.6\n", "require example.com/dep v1.2.3\n",
		"exclude example.com/bad v1.0.0\n", "replace example.com/dep v1.2.3 => example.com/dep v1.2.2\n",
		"require example.com/up v1.0.0\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("go.mod lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "module example.com/up\n") {
		t.Errorf("go.mod still declares the upstream module:\n%s", got)
	}
	for name, bad := range map[string]string{
		"other module": strings.Replace(upstream, "module example.com/up", "module example.com/other", 1),
		"no go line":   strings.Replace(upstream, "\ngo 1.26.6\n", "\n", 1),
	} {
		if got, err := RequiringGoMod(bad, "example.com/up", "v1.0.0", "zonetoll.local/up-build"); err == nil {
			t.Errorf("%s: want an error, got go.mod:\n%s", name, got)
		}
	}
	// A recipe without GoMod (prometheus, vmagent) gets the same under zonetoll.local/<Name>-build.
	r := Recipe[struct{}]{Name: "up", Module: "example.com/up", Version: "v1.0.0"}
	if byDefault, err := r.goMod(upstream); err != nil || byDefault != got {
		t.Errorf("a recipe without GoMod makes %q, %v; want RequiringGoMod's\n%s", byDefault, err, got)
	}
}
