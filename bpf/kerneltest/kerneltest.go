// Package kerneltest is the one place that decides whether a test needing the kernel (root, a BTF
// kernel) may run here, for every module's kernel tests. It is imported only by tests.
package kerneltest

import (
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// EnvRequire set to 1 (make test and CI set it) turns a skip for lack of root or BTF into a failure,
// so a kernel test is never skipped silently there.
const EnvRequire = "ZONETOLL_REQUIRE_KERNEL"

// Unavailable says why kernel tests cannot run, or "" when they can.
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
	}
	return ""
}

// Require skips t when the kernel tests cannot run here, or fails it when EnvRequire=1.
func Require(t testing.TB) {
	t.Helper()
	why := Unavailable()
	if why == "" {
		return
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("kernel test cannot run (%s) and %s=1", why, EnvRequire)
	}
	t.Skipf("skipping kernel test: %s (set %s=1 to fail instead)", why, EnvRequire)
}

// MountBPFFS mounts a private bpffs for one test binary in a new temporary directory whose name starts
// with prefix and the process id (so a later run can tell a dead run's leftovers from a live one's), and
// returns it with the function that unmounts and removes it.
func MountBPFFS(prefix string) (dir string, unmount func(), err error) {
	dir, err = os.MkdirTemp("", fmt.Sprintf("%sbpffs-%d-", prefix, os.Getpid()))
	if err != nil {
		return "", nil, fmt.Errorf("creating bpffs dir: %w", err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("mounting bpffs on %s: %w", dir, err)
	}
	return dir, func() {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		_ = os.Remove(dir)
	}, nil
}
