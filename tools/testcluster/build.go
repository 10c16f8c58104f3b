package testcluster

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

// KubernetesVersion is the kube-apiserver release the test cluster runs. It is
// the minor of the project's client-go (v0.33.x) and of the kubectl on the
// machines we use. The etcd version is whatever this release pins.
const KubernetesVersion = "v1.33.13"

// buildRecipe changes whenever the way the binaries are built changes (flags,
// ldflags, layout), so caches built by an older recipe are rebuilt.
const buildRecipe = 1

// Environment variables understood by this package.
const (
	// EnvBinDir overrides the directory holding kube-apiserver and etcd.
	EnvBinDir = "ZONETOLL_TESTCLUSTER_BIN_DIR"
	// EnvSkip, set to 1, lets cluster tests skip. CI never sets it.
	EnvSkip = "ZONETOLL_SKIP_CLUSTER_TESTS"
)

// Binary names inside the bin dir.
const (
	APIServerBinary = "kube-apiserver"
	EtcdBinary      = "etcd"
	stampFile       = "build.json"
)

// BuildHint is the command that fills the bin dir.
const BuildHint = "run `make testcluster` (or `cd tools && go run ./cmd/testcluster build`)"

// BinDir returns the directory holding the binaries: $ZONETOLL_TESTCLUSTER_BIN_DIR
// if set, else <user cache dir>/zonetoll/testcluster/k8s-<version>.
func BinDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		return filepath.Abs(d)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache dir (set %s to choose one): %w", EnvBinDir, err)
	}
	return filepath.Join(cache, "zonetoll", "testcluster", "k8s-"+KubernetesVersion), nil
}

// Stamp records what a build produced; it is written after both binaries are
// in place, so its presence with the current key means the cache is complete.
type Stamp struct {
	Key               string    `json:"key"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	EtcdVersion       string    `json:"etcdVersion"`
	GoVersion         string    `json:"goVersion"`
	BuiltAt           time.Time `json:"builtAt"`
	BuildSeconds      float64   `json:"buildSeconds"`
}

func stampKey() string {
	return fmt.Sprintf("kubernetes=%s recipe=%d", KubernetesVersion, buildRecipe)
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

// Build makes kube-apiserver and etcd from the Go module proxy unless the bin
// dir already holds binaries of the current version key. It is safe to run
// concurrently: a file lock serialises builds and binaries are renamed into
// place only when complete.
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
			fmt.Fprintf(progress, "testcluster: binaries in %s were built while waiting for the lock\n", dir)
			return st, nil
		}
	}

	start := time.Now()
	goCmd := opts.GoCommand
	if goCmd == "" {
		goCmd = "go"
	}
	b := &builder{dir: dir, srcDir: filepath.Join(dir, "src"), goCmd: goCmd, progress: progress}
	fmt.Fprintf(progress, "testcluster: building kube-apiserver %s and etcd into %s (first build on a machine takes ~8 minutes on 2 cores)\n", KubernetesVersion, dir)
	st, err := b.run(ctx)
	if err != nil {
		return nil, err
	}
	st.BuildSeconds = time.Since(start).Seconds()
	if err := writeStamp(dir, st); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "testcluster: done in %s: %s\n", time.Since(start).Round(time.Second), dir)
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
	for _, name := range []string{APIServerBinary, EtcdBinary} {
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
	fmt.Fprintf(progress, "testcluster: another build holds %s, waiting\n", path)
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
	fmt.Fprintf(b.progress, "testcluster: reading k8s.io/kubernetes@%s go.mod\n", KubernetesVersion)
	k8sMod, buildTime, err := b.kubernetesGoMod(ctx)
	if err != nil {
		return nil, err
	}
	gomod, err := throwawayGoMod(k8sMod)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(b.srcDir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(b.srcDir, "tools.go"), []byte(toolsGo), 0o644); err != nil {
		return nil, err
	}
	// go.sum from an older key could be stale; tidy rewrites it anyway.
	fmt.Fprintf(b.progress, "testcluster: resolving and downloading modules (go mod tidy; ~700 MB when the module cache is cold)\n")
	if _, err := b.goRun(ctx, "resolving modules", "mod", "tidy"); err != nil {
		return nil, err
	}
	etcdVersion, err := b.goRun(ctx, "finding the pinned etcd", "list", "-m", "-f", "{{.Version}}", "go.etcd.io/etcd/server/v3")
	if err != nil {
		return nil, err
	}
	etcdVersion = strings.TrimSpace(etcdVersion)

	ldflags := versionLDFlags(KubernetesVersion, buildTime)
	targets := []struct{ name, pkg, flags string }{
		{APIServerBinary, "k8s.io/kubernetes/cmd/kube-apiserver", ldflags},
		{EtcdBinary, "go.etcd.io/etcd/server/v3", "-s -w"},
	}
	for _, t := range targets {
		tmp := filepath.Join(b.dir, fmt.Sprintf(".%s.tmp-%d", t.name, os.Getpid()))
		fmt.Fprintf(b.progress, "testcluster: compiling %s (%s)\n", t.name, t.pkg)
		if _, err := b.goRun(ctx, "compiling "+t.name, "build", "-trimpath", "-ldflags", t.flags, "-o", tmp, t.pkg); err != nil {
			os.Remove(tmp)
			return nil, err
		}
		if err := verifyBinary(ctx, tmp, t.name, etcdVersion); err != nil {
			os.Remove(tmp)
			return nil, err
		}
		if err := os.Rename(tmp, filepath.Join(b.dir, t.name)); err != nil {
			os.Remove(tmp)
			return nil, fmt.Errorf("moving %s into place: %w", t.name, err)
		}
	}
	goVersion, _ := b.goRun(ctx, "reading go version", "env", "GOVERSION")
	return &Stamp{
		Key:               stampKey(),
		KubernetesVersion: KubernetesVersion,
		EtcdVersion:       etcdVersion,
		GoVersion:         strings.TrimSpace(goVersion),
		BuiltAt:           time.Now().UTC(),
	}, nil
}

// kubernetesGoMod fetches only the .mod and .info of k8s.io/kubernetes.
func (b *builder) kubernetesGoMod(ctx context.Context) (string, time.Time, error) {
	out, err := b.goRun(ctx, "reading kubernetes go.mod", "list", "-m", "-json", "k8s.io/kubernetes@"+KubernetesVersion)
	if err != nil {
		return "", time.Time{}, err
	}
	var m struct {
		GoMod string
		Time  time.Time
	}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return "", time.Time{}, fmt.Errorf("decoding go list output for k8s.io/kubernetes: %w", err)
	}
	data, err := os.ReadFile(m.GoMod)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading kubernetes go.mod: %w", err)
	}
	return string(data), m.Time, nil
}

var stagingReplace = regexp.MustCompile(`(?m)^\s*(k8s\.io/[A-Za-z0-9._-]+)\s*=>\s*\./staging/src/k8s\.io/[A-Za-z0-9._-]+\s*$`)
var godebugLine = regexp.MustCompile(`(?m)^godebug\s+.*$`)

// throwawayGoMod turns kubernetes' staging replaces (./staging/src/k8s.io/X)
// into the published k8s.io/X v0.<minor>.<patch> modules, which is what makes
// k8s.io/kubernetes buildable as a dependency.
func throwawayGoMod(k8sMod string) (string, error) {
	stagingVersion := "v0" + strings.TrimPrefix(KubernetesVersion, "v1")
	matches := stagingReplace.FindAllStringSubmatch(k8sMod, -1)
	if len(matches) == 0 {
		return "", errors.New("kubernetes go.mod has no staging replaces; the build recipe needs updating")
	}
	var sb strings.Builder
	sb.WriteString("// Generated by zonetoll tools/testcluster; safe to delete.\n")
	sb.WriteString("module zonetoll.local/testcluster-build\n\ngo 1.24.0\n\n")
	// kubernetes' own godebug defaults apply only when it is the main module;
	// copy them so the binaries behave like the release.
	for _, l := range godebugLine.FindAllString(k8sMod, -1) {
		sb.WriteString(l + "\n")
	}
	fmt.Fprintf(&sb, "\nrequire k8s.io/kubernetes %s\n\nreplace (\n", KubernetesVersion)
	for _, m := range matches {
		fmt.Fprintf(&sb, "\t%s => %s %s\n", m[1], m[1], stagingVersion)
	}
	sb.WriteString(")\n")
	return sb.String(), nil
}

const toolsGo = `//go:build tools

// Package tools pins the commands built by zonetoll tools/testcluster.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
`

// versionLDFlags sets the version variables kubernetes' own build sets, so the
// server reports its real version (kubectl chooses its client by it).
func versionLDFlags(version string, buildTime time.Time) string {
	major, minor := "1", ""
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	flags := []string{"-s", "-w"}
	for _, pkg := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		flags = append(flags,
			"-X", pkg+".gitVersion="+version,
			"-X", pkg+".gitMajor="+major,
			"-X", pkg+".gitMinor="+minor,
			"-X", pkg+".gitTreeState=archive",
			// The module's publish time keeps the build reproducible.
			"-X", pkg+".buildDate="+buildTime.UTC().Format(time.RFC3339),
		)
	}
	return strings.Join(flags, " ")
}

// verifyBinary runs the fresh binary's --version so a broken build never
// replaces a working one.
func verifyBinary(ctx context.Context, path, name, etcdVersion string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("running %s --version: %w: %s", name, err, bytes.TrimSpace(out))
	}
	want := KubernetesVersion
	if name == EtcdBinary {
		want = strings.TrimPrefix(etcdVersion, "v")
	}
	if !strings.Contains(string(out), want) {
		return fmt.Errorf("%s --version printed %q, want it to mention %s", name, bytes.TrimSpace(out), want)
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
			fmt.Fprintf(b.progress, "testcluster: still %s (%s elapsed)\n", what, time.Since(start).Round(time.Second))
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
