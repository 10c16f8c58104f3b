// Package servicebuild builds a zonetoll service binary the way `make build` does: static, trimmed,
// with version and revision stamped in. The image builder, the demo and the tests all build through it.
package servicebuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/zonetoll/zonetoll/shared/buildinfo"
	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/repo"
)

// Names lists every service under services/, in the order they are built and imaged.
func Names() []string { return []string{"zonelabeler", "flowagent", "flowserver", "costcalc"} }

// Options says what to build from where.
type Options struct {
	RepoRoot string // the checkout holding services/<name>
	Version  string // stamped into buildinfo.Version
	Revision string // stamped into buildinfo.Revision
	GOARCH   string // empty: the host's
	// Output receives the go command's output as it runs; nil discards it (it is still quoted in an
	// error).
	Output io.Writer
}

// Build builds services/<name>/cmd/<name> into dir and returns the binary's path.
func Build(ctx context.Context, opts Options, name, dir string) (string, error) {
	arch := opts.GOARCH
	if arch == "" {
		arch = runtime.GOARCH
	}
	out := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", buildinfo.LDFlags(opts.Version, opts.Revision),
		"-o", out, "./cmd/"+name)
	cmd.Dir = filepath.Join(opts.RepoRoot, "services", name)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	var stderr bytes.Buffer
	var sink io.Writer = io.Discard
	if opts.Output != nil {
		sink = opts.Output
	}
	cmd.Stdout = sink
	cmd.Stderr = io.MultiWriter(&stderr, sink)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s in %s: %w: %s", name, cmd.Dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// GitStamp is the version (git describe --tags --always --dirty) and revision (the commit) of the
// checkout at root, what `make build` stamps into the binaries.
func GitStamp(ctx context.Context, root string) (version, revision string, err error) {
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s in %s: %w", strings.Join(args, " "), root, err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	if version, err = run("describe", "--tags", "--always", "--dirty"); err != nil {
		return "", "", err
	}
	if revision, err = run("rev-parse", "HEAD"); err != nil {
		return "", "", err
	}
	return version, revision, nil
}

// BinaryT builds the named service from the test's repository (version v0.0.0-test) into a temporary
// directory of t, failing the test on error.
func BinaryT(t gate.TB, name string) string {
	t.Helper()
	bin, err := Build(t.Context(), Options{RepoRoot: repo.RootT(t), Version: "v0.0.0-test", Revision: "test"}, name, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
