package counter

import (
	"errors"
	"fmt"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// netnsPrefix names every network namespace these tests create, so leftovers
// of a crashed run are found and removed.
const netnsPrefix = "ztbpf-"

// bpffsRoot is a private bpffs mounted for this test binary (empty when the
// tests cannot use the kernel).
var bpffsRoot string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if kerneltest.Unavailable() != "" {
		return m.Run()
	}
	removeLeftovers()
	dir, unmount, err := kerneltest.MountBPFFS(netnsPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer unmount()
	bpffsRoot = dir

	before := bpfFDs()
	code := m.Run()
	removeLeftovers()
	if leaked := bpfFDs() - before; leaked > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d BPF map/program/link file descriptors leaked\n", leaked)
		code = 1
	}
	return code
}

// pinDir returns a fresh directory on the private bpffs.
func pinDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(bpffsRoot, "pins-")
	if err != nil {
		t.Fatalf("creating pin dir: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// bpfFDs counts this process's open BPF map, program and link descriptors.
func bpfFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, "anon_inode:bpf-") {
			n++
		}
	}
	return n
}

// removeLeftovers deletes network namespaces and bpffs mounts of earlier
// runs of this package whose process is gone. Names carry the creating pid,
// so a concurrent run of the same tests is left alone.
func removeLeftovers() {
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if leftover(strings.TrimPrefix(e.Name(), netnsPrefix), e.Name()) {
			_ = exec.Command("ip", "netns", "del", e.Name()).Run()
		}
	}
	ents, _ = os.ReadDir(os.TempDir())
	for _, e := range ents {
		if leftover(strings.TrimPrefix(e.Name(), netnsPrefix+"bpffs-"), e.Name()) {
			dir := filepath.Join(os.TempDir(), e.Name())
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			_ = os.Remove(dir)
		}
	}
}

// leftover reports whether name (rest is name without its prefix, starting
// with "<pid>-") belongs to a process that no longer exists.
func leftover(rest, name string) bool {
	if !strings.HasPrefix(name, netnsPrefix) {
		return false
	}
	pid, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	n, err := strconv.Atoi(pid)
	if err != nil {
		return false
	}
	if n == os.Getpid() {
		return true
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", n))
	return errors.Is(err, os.ErrNotExist)
}
