// Package prometheus builds upstream prometheus and promtool from the Go module
// proxy and runs them against zonetoll's example scrape configurations.
//
// Debian's prometheus package is built without Kubernetes service discovery,
// so its promtool rejects every kubernetes_sd_configs block; the upstream
// build is the only honest check of the per-zone examples.
package prometheus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
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
	// EnvSkip, set to 1, lets the tests that need the binaries skip. It is
	// the same variable the cluster tests honour; CI never sets it.
	EnvSkip = "ZONETOLL_SKIP_CLUSTER_TESTS"
)

// Binary names inside the bin dir.
const (
	PrometheusBinary = "prometheus"
	PromtoolBinary   = "promtool"
	stampFile        = "build.json"
)

// BuildHint is the command that fills the bin dir.
const BuildHint = "run `cd tools && go run ./cmd/prometheus build`"

// BinDir returns the directory holding the binaries: $ZONETOLL_PROMETHEUS_BIN_DIR
// if set, else <user cache dir>/zonetoll/prometheus/<version>.
func BinDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		return filepath.Abs(d)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache dir (set %s to choose one): %w", EnvBinDir, err)
	}
	return filepath.Join(cache, "zonetoll", "prometheus", Version), nil
}

// Binaries are the paths of a complete build.
type Binaries struct {
	Prometheus string
	Promtool   string
}

// Installed returns the binaries in dir (BinDir() when empty) if a build of
// the current version key is complete there, and an error naming BuildHint
// otherwise.
func Installed(dir string) (Binaries, error) {
	if dir == "" {
		var err error
		if dir, err = BinDir(); err != nil {
			return Binaries{}, err
		}
	}
	if _, err := readCurrentStamp(dir); err != nil {
		return Binaries{}, fmt.Errorf("no Prometheus %s build in %s (%v): %s", Version, dir, err, BuildHint)
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

// BuildOptions configures Build.
type BuildOptions struct {
	// BinDir is where binaries go; empty means BinDir().
	BinDir string
	// Force rebuilds even when the cache is current.
	Force bool
	// Progress receives human-readable progress lines; nil means io.Discard.
	Progress io.Writer
	// GoCommand is the go binary to use; empty means "go" from PATH.
	GoCommand string
}

// Build makes prometheus and promtool from the Go module proxy unless the bin
// dir already holds binaries of the current version key. It is safe to run
// concurrently: a file lock serialises builds and binaries are renamed into
// place only when complete and verified.
func Build(ctx context.Context, opts BuildOptions) (*Stamp, error) {
	progress := opts.Progress
	if progress == nil {
		progress = io.Discard
	}
	dir := opts.BinDir
	if dir == "" {
		var err error
		if dir, err = BinDir(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating bin dir: %w", err)
	}
	if !opts.Force {
		if st, err := readCurrentStamp(dir); err == nil {
			return st, nil
		}
	}

	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"), progress)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another build may have finished while we waited for the lock.
	if !opts.Force {
		if st, err := readCurrentStamp(dir); err == nil {
			fmt.Fprintf(progress, "prometheus: binaries in %s were built while waiting for the lock\n", dir)
			return st, nil
		}
	}

	start := time.Now()
	goCmd := opts.GoCommand
	if goCmd == "" {
		goCmd = "go"
	}
	b := &builder{dir: dir, srcDir: filepath.Join(dir, "src"), goCmd: goCmd, progress: progress}
	fmt.Fprintf(progress, "prometheus: building prometheus and promtool %s (%s@%s) into %s (the first build on a machine compiles ~1,400 packages: 3 to 15 minutes on 2 cores, depending on load)\n",
		Version, modulePath, ModuleVersion, dir)
	st, err := b.run(ctx)
	if err != nil {
		return nil, err
	}
	st.BuildSeconds = time.Since(start).Seconds()
	if err := writeStamp(dir, st); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "prometheus: done in %s: %s\n", time.Since(start).Round(time.Second), dir)
	return st, nil
}

// readCurrentStamp returns the stamp if it matches the current key and both
// binaries exist.
func readCurrentStamp(dir string) (*Stamp, error) {
	data, err := os.ReadFile(filepath.Join(dir, stampFile))
	if err != nil {
		return nil, err
	}
	var st Stamp
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("reading build stamp: %w", err)
	}
	if st.Key != stampKey() {
		return nil, fmt.Errorf("build stamp key %q is not the current %q", st.Key, stampKey())
	}
	for _, name := range []string{PrometheusBinary, PromtoolBinary} {
		if err := checkExecutable(filepath.Join(dir, name)); err != nil {
			return nil, err
		}
	}
	return &st, nil
}

func writeStamp(dir string, st *Stamp) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding build stamp: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, stampFile), append(data, '\n'), 0o644)
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// lockFile takes an exclusive flock, printing a line if it has to wait.
func lockFile(ctx context.Context, path string, progress io.Writer) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening build lock: %w", err)
	}
	fd := int(f.Fd())
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
		return func() { f.Close() }, nil
	}
	fmt.Fprintf(progress, "prometheus: another build holds %s, waiting\n", path)
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

type builder struct {
	dir, srcDir string
	goCmd       string
	progress    io.Writer
}

func (b *builder) run(ctx context.Context) (*Stamp, error) {
	if err := os.MkdirAll(b.srcDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating build module dir: %w", err)
	}
	fmt.Fprintf(b.progress, "prometheus: reading %s@%s go.mod\n", modulePath, ModuleVersion)
	promMod, published, err := b.prometheusGoMod(ctx)
	if err != nil {
		return nil, err
	}
	gomod, err := throwawayGoMod(promMod)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(b.srcDir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(b.srcDir, "tools.go"), []byte(toolsGo), 0o644); err != nil {
		return nil, err
	}
	fmt.Fprintf(b.progress, "prometheus: resolving and downloading modules (go mod tidy; several hundred MB when the module cache is cold)\n")
	if _, err := b.goRun(ctx, "resolving modules", "mod", "tidy"); err != nil {
		return nil, err
	}

	ldflags := versionLDFlags(Version, published)
	for _, name := range []string{PromtoolBinary, PrometheusBinary} {
		tmp := filepath.Join(b.dir, fmt.Sprintf(".%s.tmp-%d", name, os.Getpid()))
		pkg := modulePath + "/cmd/" + name
		fmt.Fprintf(b.progress, "prometheus: compiling %s (%s)\n", name, pkg)
		if _, err := b.goRun(ctx, "compiling "+name, "build", "-trimpath", "-ldflags", ldflags, "-o", tmp, pkg); err != nil {
			os.Remove(tmp)
			return nil, err
		}
		if err := verifyBinary(ctx, tmp, name); err != nil {
			os.Remove(tmp)
			return nil, err
		}
		if err := os.Rename(tmp, filepath.Join(b.dir, name)); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("moving %s into place: %w", name, err)
		}
	}
	goVersion, _ := b.goRun(ctx, "reading go version", "env", "GOVERSION")
	return &Stamp{
		Key:           stampKey(),
		Version:       Version,
		ModuleVersion: ModuleVersion,
		GoVersion:     strings.TrimSpace(goVersion),
		BuiltAt:       time.Now().UTC(),
	}, nil
}

// prometheusGoMod fetches only the .mod and .info of the prometheus module.
func (b *builder) prometheusGoMod(ctx context.Context) (string, time.Time, error) {
	out, err := b.goRun(ctx, "reading prometheus go.mod", "list", "-m", "-json", modulePath+"@"+ModuleVersion)
	if err != nil {
		return "", time.Time{}, err
	}
	var m struct {
		GoMod string
		Time  time.Time
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return "", time.Time{}, fmt.Errorf("decoding go list output for %s: %w", modulePath, err)
	}
	data, err := os.ReadFile(m.GoMod)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading prometheus go.mod: %w", err)
	}
	return string(data), m.Time, nil
}

var moduleLine = regexp.MustCompile(`(?m)^module\s+\S+\s*$`)

// throwawayGoMod makes the build module's go.mod from prometheus' own: the
// same go directive, requires, excludes and replaces, because a dependency's
// excludes and replaces apply only when it is the main module (prometheus
// pins fsnotify back by a replace, for instance). Repeating its requires also
// keeps minimal version selection on exactly the versions it was released with.
func throwawayGoMod(promMod string) (string, error) {
	if !moduleLine.MatchString(promMod) || !strings.Contains(promMod, "module "+modulePath) {
		return "", fmt.Errorf("%s@%s go.mod does not declare module %s; the build recipe needs updating", modulePath, ModuleVersion, modulePath)
	}
	if !strings.Contains(promMod, "\ngo ") {
		return "", errors.New("prometheus go.mod has no go directive; the build recipe needs updating")
	}
	body := moduleLine.ReplaceAllString(promMod, "module zonetoll.local/prometheus-build")
	var sb strings.Builder
	sb.WriteString("// Generated by zonetoll tools/prometheus from " + modulePath + "@" + ModuleVersion + "'s go.mod; safe to delete.\n")
	sb.WriteString(body)
	fmt.Fprintf(&sb, "\nrequire %s %s\n", modulePath, ModuleVersion)
	return sb.String(), nil
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

// verifyBinary runs the fresh binary's --version so a broken build never
// replaces a working one.
func verifyBinary(ctx context.Context, path, name string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s --version: %w: %s", name, err, bytes.TrimSpace(out))
	}
	want := fmt.Sprintf("%s, version %s", name, strings.TrimPrefix(Version, "v"))
	if !strings.Contains(string(out), want) {
		return fmt.Errorf("%s --version printed %q, want it to contain %q", name, bytes.TrimSpace(out), want)
	}
	return nil
}

// goRun runs the go command in the throwaway module, printing a line every
// 30 s so a slow first build does not look hung.
func (b *builder) goRun(ctx context.Context, what string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.goCmd, args...)
	cmd.Dir = b.srcDir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0", "GOFLAGS=-mod=mod -buildvcs=false", "GOTOOLCHAIN=local")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%s: starting %s: %w", what, b.goCmd, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				return "", fmt.Errorf("%s: go %s: %w\n%s", what, strings.Join(args, " "), err, tail(stderr.String(), 40))
			}
			return stdout.String(), nil
		case <-tick.C:
			fmt.Fprintf(b.progress, "prometheus: still %s (%s elapsed)\n", what, time.Since(start).Round(time.Second))
		}
	}
}

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

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
