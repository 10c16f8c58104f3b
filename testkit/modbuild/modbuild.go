// Package modbuild builds the commands of an upstream Go module into a
// version-keyed cache directory, through a throwaway module that requires it.
//
// A Recipe says what differs per upstream (how the throwaway go.mod is derived,
// which packages are compiled with which ldflags, what --version must print);
// this package does the rest the same way for all of them: one file lock per
// cache dir, a stamp (build.json) that is written only after every binary is in
// place and verified, and binaries that are renamed into place only when they
// work, so a broken build never replaces a working one.
package modbuild

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StampFile is the name of the stamp inside the cache dir.
const StampFile = "build.json"

// Recipe describes one upstream build. S is the recipe's stamp type; it must
// encode Recipe.Key under the JSON name "key", which is how a cache is
// recognised as current.
type Recipe[S any] struct {
	// Name prefixes every progress line ("testcluster: ...").
	Name string
	// DirEnv names the environment variable that overrides the cache dir,
	// and CacheDir the default dir under <user cache dir>/zonetoll.
	DirEnv   string
	CacheDir []string
	// Module and Version name the upstream module whose go.mod is read.
	Module, Version string
	// What is built, for the first progress line ("kube-apiserver v1.33.13 and etcd").
	What string
	// FirstBuild says how long a cold build takes, so a slow one does not look hung.
	FirstBuild string
	// Download says how much the first go mod tidy fetches.
	Download string
	// Key identifies the build; a stamp with another key is rebuilt.
	Key string
	// Binaries are the files a complete build leaves in the cache dir.
	Binaries []string
	// GoMod derives the throwaway module's go.mod from the upstream one; nil
	// means RequiringGoMod under the name zonetoll.local/<Name>-build, which
	// is what a module that builds with its own go.mod needs.
	GoMod func(upstream string) (string, error)
	// ToolsGo pins the built commands in the throwaway module.
	ToolsGo string
	// Plan runs after go mod tidy and says what to compile. published is the
	// upstream version's publish time, which keeps version ldflags reproducible.
	Plan func(ctx context.Context, g *Go, published time.Time) (*Plan[S], error)
}

// Plan is what one build compiles and records.
type Plan[S any] struct {
	// Targets are compiled in order; each must be one of Recipe.Binaries.
	Targets []Target
	// Stamp makes the stamp once every target is in place.
	Stamp func(Built) *S
}

// Target is one binary of a build.
type Target struct {
	// Name is the file name in the cache dir.
	Name string
	// Package is the import path of the main package.
	Package string
	// LDFlags are passed to go build -ldflags.
	LDFlags string
	// Version must appear in the output of the fresh binary's --version (or
	// VersionArgs); a binary that does not print it is discarded.
	Version string
	// VersionArgs, split on spaces, replace --version for commands that
	// print their version another way (kubectl: "version --client"). A
	// string keeps Target comparable.
	VersionArgs string
}

// Built is what a build found out that every stamp records.
type Built struct {
	Key          string
	GoVersion    string
	BuiltAt      time.Time
	BuildSeconds float64
}

// Options configures Build.
type Options struct {
	// BinDir is where binaries go; empty means the recipe's Dir().
	BinDir string
	// Force rebuilds even when the cache is current.
	Force bool
	// Progress receives human-readable progress lines; nil means io.Discard.
	Progress io.Writer
	// GoCommand is the go binary to use; empty means "go" from PATH.
	GoCommand string
}

// Dir returns the cache dir: $DirEnv if it is set (made absolute), else
// <user cache dir>/zonetoll/<CacheDir...>.
func (r Recipe[S]) Dir() (string, error) {
	if d := os.Getenv(r.DirEnv); d != "" {
		return filepath.Abs(d)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache dir (set %s to choose one): %w", r.DirEnv, err)
	}
	return filepath.Join(append([]string{cache, "zonetoll"}, r.CacheDir...)...), nil
}

// Current returns the stamp in dir if it carries the recipe's key and every
// binary is an executable file there.
func (r Recipe[S]) Current(dir string) (*S, error) {
	data, err := os.ReadFile(filepath.Join(dir, StampFile))
	if err != nil {
		return nil, err
	}
	var key struct {
		Key string `json:"key"`
	}
	var st S
	if err := json.Unmarshal(data, &key); err != nil {
		return nil, fmt.Errorf("reading build stamp: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading build stamp: %w", err)
	}
	if key.Key != r.Key {
		return nil, fmt.Errorf("build stamp key %q is not the current %q", key.Key, r.Key)
	}
	for _, name := range r.Binaries {
		if err := CheckExecutable(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	return &st, nil
}

// Installed returns dir (the recipe's Dir() when empty) if a build of the current key is complete
// there, and otherwise an error naming what is missing and hint, the command that builds it.
func (r Recipe[S]) Installed(dir, hint string) (string, error) {
	if dir == "" {
		var err error
		if dir, err = r.Dir(); err != nil {
			return "", err
		}
	}
	if _, err := r.Current(dir); err != nil {
		return "", fmt.Errorf("no %s build in %s (%v): %s", r.What, dir, err, hint)
	}
	return dir, nil
}

// Build makes the recipe's binaries unless the bin dir already holds a
// current build. It is safe to run concurrently, in one process or many: a file lock
// serialises builds, and whoever waited finds the build done.
func (r Recipe[S]) Build(ctx context.Context, opts Options) (*S, error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	dir := opts.BinDir
	if dir == "" {
		var err error
		if dir, err = r.Dir(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating bin dir: %w", err)
	}
	if !opts.Force {
		if st, err := r.Current(dir); err == nil {
			return st, nil
		}
	}

	unlock, err := r.lock(ctx, filepath.Join(dir, ".lock"), progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another build may have finished while we waited for the lock.
	if !opts.Force {
		if st, err := r.Current(dir); err == nil {
			fmt.Fprintf(progress, "%s: binaries in %s were built while waiting for the lock\n", r.Name, dir)
			return st, nil
		}
	}

	start := time.Now()
	goCmd := opts.GoCommand
	if goCmd == "" {
		goCmd = "go"
	}
	g := &Go{cmd: goCmd, dir: filepath.Join(dir, "src"), name: r.Name, progress: progress}
	fmt.Fprintf(progress, "%s: building %s into %s (%s)\n", r.Name, r.What, dir, r.FirstBuild)
	stamp, err := r.run(ctx, dir, g, progress)
	if err != nil {
		return nil, err
	}
	goVersion, _ := g.Run(ctx, "reading go version", "env", "GOVERSION")
	st := stamp(Built{
		Key:          r.Key,
		GoVersion:    strings.TrimSpace(goVersion),
		BuiltAt:      time.Now().UTC(),
		BuildSeconds: time.Since(start).Seconds(),
	})
	if err := r.writeStamp(dir, st); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "%s: done in %s: %s\n", r.Name, time.Since(start).Round(time.Second), dir)
	return st, nil
}

// goMod is GoMod, or RequiringGoMod where the recipe sets none.
func (r Recipe[S]) goMod(upstream string) (string, error) {
	if r.GoMod != nil {
		return r.GoMod(upstream)
	}
	return RequiringGoMod(upstream, r.Module, r.Version, "zonetoll.local/"+r.Name+"-build")
}

// run writes the throwaway module, resolves it and puts every target in
// place, returning the plan's stamp maker.
func (r Recipe[S]) run(ctx context.Context, dir string, g *Go, progress io.Writer) (func(Built) *S, error) {
	if err := os.MkdirAll(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating build module dir: %w", err)
	}
	fmt.Fprintf(progress, "%s: reading %s@%s go.mod\n", r.Name, r.Module, r.Version)
	upstream, published, err := g.upstreamGoMod(ctx, r.Module, r.Version)
	if err != nil {
		return nil, err
	}
	gomod, err := r.goMod(upstream)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(g.dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(g.dir, "tools.go"), []byte(r.ToolsGo), 0o644); err != nil {
		return nil, err
	}
	// go.sum from an older key could be stale; tidy rewrites it anyway.
	fmt.Fprintf(progress, "%s: resolving and downloading modules (go mod tidy; %s)\n", r.Name, r.Download)
	if _, err := g.Run(ctx, "resolving modules", "mod", "tidy"); err != nil {
		return nil, err
	}
	plan, err := r.Plan(ctx, g, published)
	if err != nil {
		return nil, err
	}
	for _, t := range plan.Targets {
		// Only what tools.go imports is resolved by go mod tidy.
		if !strings.Contains(r.ToolsGo, strconv.Quote(t.Package)) {
			return nil, fmt.Errorf("%s's tools.go does not import %s; the build recipe needs updating", r.Name, t.Package)
		}
	}
	for _, t := range plan.Targets {
		if err := r.buildTarget(ctx, dir, g, t, progress); err != nil {
			return nil, err
		}
	}
	return plan.Stamp, nil
}

// buildTarget compiles t to a temporary name and renames it into place only
// once its --version says the right thing.
func (r Recipe[S]) buildTarget(ctx context.Context, dir string, g *Go, t Target, progress io.Writer) error {
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.tmp-%d", t.Name, os.Getpid()))
	fmt.Fprintf(progress, "%s: compiling %s (%s)\n", r.Name, t.Name, t.Package)
	if _, err := g.Run(ctx, "compiling "+t.Name, "build", "-trimpath", "-ldflags", t.LDFlags, "-o", tmp, t.Package); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := checkVersion(ctx, tmp, t.Name, t.Version, t.VersionArgs); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, t.Name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("moving %s into place: %w", t.Name, err)
	}
	return nil
}

// checkVersion runs the fresh binary's --version (or args) so a broken build
// never replaces a working one.
func checkVersion(ctx context.Context, path, name, want, versionArgs string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := strings.Fields(versionArgs)
	if len(args) == 0 {
		args = []string{"--version"}
	}
	cmd := strings.Join(args, " ")
	out, err := exec.CommandContext(ctx, path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s %s: %w: %s", name, cmd, err, bytes.TrimSpace(out))
	}
	if !strings.Contains(string(out), want) {
		return fmt.Errorf("%s %s printed %q, want it to contain %q", name, cmd, bytes.TrimSpace(out), want)
	}
	return nil
}

func (r Recipe[S]) writeStamp(dir string, st *S) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding build stamp: %w", err)
	}
	// A stamp that does not record the key would make every later run
	// rebuild; say so now instead.
	var key struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(data, &key); err != nil || key.Key != r.Key {
		return fmt.Errorf("encoding build stamp: %s's stamp records key %q, want %q", r.Name, key.Key, r.Key)
	}
	return writeFileAtomic(filepath.Join(dir, StampFile), append(data, '\n'), 0o644)
}

// lock takes an exclusive flock, printing a line if it has to wait.
func (r Recipe[S]) lock(ctx context.Context, path string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock: %w", err)
	}
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	fmt.Fprintf(progress, "%s: another build holds %s, waiting\n", r.Name, path)
	done := make(chan error, 1)
	go func() { done <- syscall.Flock(fd, syscall.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		return func() { f.Close() }, nil
	case <-ctx.Done():
		// Closing the file releases a lock the goroutine may still get.
		f.Close()
		return nil, fmt.Errorf("waiting for build lock: %w", ctx.Err())
	}
}

// Go runs the go command in the throwaway module.
type Go struct {
	cmd, dir string
	name     string
	progress io.Writer
}

// Run runs go with args in the throwaway module and returns its stdout. what
// names the step in errors and in the line printed every 30 s so a slow
// first build does not look hung.
func (g *Go) Run(ctx context.Context, what string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.cmd, args...)
	cmd.Dir = g.dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod -buildvcs=false", "GOTOOLCHAIN=local")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: starting %s: %w", what, g.cmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return "", fmt.Errorf("%s: go %s: %w\n%s", what, strings.Join(args, " "), err, Tail(stderr.String(), 40))
			}
			return stdout.String(), nil
		case <-tick.C:
			fmt.Fprintf(g.progress, "%s: still %s (%s elapsed)\n", g.name, what, time.Since(start).Round(time.Second))
		}
	}
}

// upstreamGoMod fetches only the .mod and .info of module@version.
func (g *Go) upstreamGoMod(ctx context.Context, module, version string) (string, time.Time, error) {
	out, err := g.Run(ctx, "reading "+module+" go.mod", "list", "-m", "-json", module+"@"+version)
	if err != nil {
		return "", time.Time{}, err
	}
	var m struct {
		GoMod string
		Time  time.Time
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return "", time.Time{}, fmt.Errorf("decoding go list output for %s: %w", module, err)
	}
	data, err := os.ReadFile(m.GoMod)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading %s go.mod: %w", module, err)
	}
	return string(data), m.Time, nil
}

// CheckExecutable returns an error unless path is an executable regular file;
// a missing file gives an error matching os.ErrNotExist.
func CheckExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// writeFileAtomic writes data to a temporary file beside path and renames it
// over path, so readers see the old content or the new, never a part.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+\S+\s*$`)

// RequiringGoMod makes a throwaway build module's go.mod from upstream's own
// (the go.mod of module@version): the same go directive, requires, excludes
// and replaces, under the name buildModule, plus a require of module@version.
// A dependency's excludes and replaces apply only when it is the main module,
// and repeating its requires keeps minimal version selection on exactly the
// versions it was released with.
func RequiringGoMod(upstream, module, version, buildModule string) (string, error) {
	if !moduleLine.MatchString(upstream) || !strings.Contains(upstream, "module "+module) {
		return "", fmt.Errorf("%s@%s go.mod does not declare module %s; the build recipe needs updating", module, version, module)
	}
	if !strings.Contains(upstream, "\ngo ") {
		return "", fmt.Errorf("%s@%s go.mod has no go directive; the build recipe needs updating", module, version)
	}
	body := moduleLine.ReplaceAllString(upstream, "module "+buildModule)
	var sb strings.Builder
	sb.WriteString("// Generated by zonetoll testkit from " + module + "@" + version + "'s go.mod; safe to delete.\n")
	sb.WriteString(body)
	fmt.Fprintf(&sb, "\nrequire %s %s\n", module, version)
	return sb.String(), nil
}
