package counter

import (
	"fmt"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	kerneltest.RemoveLeftovers(netnsPrefix)
	dir, unmount, err := kerneltest.MountBPFFS(netnsPrefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer unmount()
	bpffsRoot = dir

	before := bpfFDs()
	code := m.Run()
	kerneltest.RemoveLeftovers(netnsPrefix)
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

// requireMode skips t when the kernel reports, through the feature probes of Probe, that it lacks
// what mode needs: BPF netfilter programs (Linux 6.4) and BTF for ModeNetfilter. It never skips on
// a guess: TestProbeMatchesKernelVersion fails where the probes deny a feature the kernel has.
func requireMode(t testing.TB, m Mode) {
	t.Helper()
	if m != ModeNetfilter {
		return
	}
	f, err := Probe()
	if err != nil {
		t.Fatalf("probing the kernel: %v", err)
	}
	if !f.Netfilter || !f.BTF {
		t.Skipf("kernel lacks what netfilter mode needs (probe: %+v; BPF netfilter programs came in Linux 6.4)", f)
	}
}
