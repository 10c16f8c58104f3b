// Package kerneltest is the one place that decides whether a test needing the kernel (root, a BTF
// kernel) may run here, for every module's kernel tests. It is imported only by tests.
package kerneltest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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

// RemoveLeftovers deletes the network namespaces (<prefix><pid>-…) and private bpffs mounts
// (<prefix>bpffs-<pid>-…) of test runs whose process is gone, and this process's own. A crashed run
// leaves them behind; a run still going in parallel (its pid alive) keeps them.
func RemoveLeftovers(prefix string) {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if ownerGone(e.Name(), prefix) {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
	ents, _ = os.ReadDir(os.TempDir())
	for _, e := range ents {
		if ownerGone(e.Name(), prefix+"bpffs-") {
			dir := filepath.Join(os.TempDir(), e.Name())
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			_ = os.Remove(dir)
		}
	}
}

// ownerGone reports whether name is <prefix><pid>-… of a dead process or of this one.
func ownerGone(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil {
		return false
	}
	if pid == os.Getpid() {
		return true
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}
