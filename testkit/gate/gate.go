// Package gate decides what a test does when the machine lacks something it needs (root, a BTF kernel,
// the test cluster's binaries, Prometheus, Chromium, …): under `make test` and CI, where
// ZONETOLL_REQUIRE_ALL=1, it fails loudly; anywhere else it skips, naming the command that installs the
// missing part. It is the one place that makes that decision, so a fresh CI machine can never pass by
// skipping. Under `go test -short` (make check, the inner loop) every such test skips, present or not:
// the inner loop is what runs in seconds without root or the test cluster.
//
// The kit's helpers take a TB rather than a *testing.T so that the commands which reuse the kit's
// non-test parts (the demo starts the test cluster) do not link package testing.
package gate

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
)

// EnvRequireAll set to 1 (hack/test.sh and CI set it) turns every missing prerequisite into a failure.
const EnvRequireAll = "ZONETOLL_REQUIRE_ALL"

// TB is the part of testing.TB the kit uses; *testing.T and *testing.B satisfy it.
type TB interface {
	Cleanup(func())
	Context() context.Context
	Error(args ...any)
	Errorf(format string, args ...any)
	Failed() bool
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Helper()
	Log(args ...any)
	Logf(format string, args ...any)
	Name() string
	Setenv(key, value string)
	Skipf(format string, args ...any)
	TempDir() string
}

// Required reports whether a missing prerequisite fails the test instead of skipping it.
func Required() bool { return os.Getenv(EnvRequireAll) == "1" }

// Short reports whether the test binary runs with -short. It reads the flag instead of calling
// testing.Short so that this package does not link package testing into commands.
func Short() bool {
	f := flag.Lookup("test.short")
	return f != nil && f.Value.String() == "true"
}

// Need lets t go on when err is nil. Otherwise it skips t, or fails it when Required, with what is
// missing, why (err) and the command that installs it.
func Need(t TB, what string, err error, install string) {
	t.Helper()
	if Short() {
		t.Skipf("needs %s: skipped under -short (the inner loop, make check)", what)
		return
	}
	if err == nil {
		return
	}
	msg := fmt.Sprintf("needs %s: %v; to get it: %s", what, err, install)
	if Required() {
		t.Fatalf("%s (%s=1 forbids skipping)", msg, EnvRequireAll)
		return
	}
	t.Skipf("%s (skipped; %s=1 makes this a failure)", msg, EnvRequireAll)
}

// Root needs the test to run as root (BPF, network namespaces).
func Root(t TB) {
	t.Helper()
	var err error
	if os.Geteuid() != 0 {
		err = errors.New("not running as root")
	}
	Need(t, "root", err, "run the tests as root, as `make test` does")
}

// Kernel needs root and a kernel with BTF (/sys/kernel/btf/vmlinux): what every kernel test loading
// the BPF counter needs.
func Kernel(t TB) {
	t.Helper()
	Root(t)
	_, err := os.Stat("/sys/kernel/btf/vmlinux")
	Need(t, "a kernel with BTF", err, "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (make test-kernels runs the kernel tests in VMs)")
}

// Command needs an executable on PATH and returns its path; install says how to get it.
func Command(t TB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	Need(t, name, err, install)
	return path
}

// Debian is the install hint for a command from one of the Debian packages `make setup` installs.
func Debian(pkg string) string {
	return "make setup (apt-get install " + pkg + ")"
}
