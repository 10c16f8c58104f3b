package counter

import (
	"os"
	"testing"

	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

// netnsPrefix names every network namespace these tests create, so leftovers
// of a crashed run are found and removed.
const netnsPrefix = "ztbpf-"

// bpffsRoot is a private bpffs mounted for this test binary (empty when the
// tests cannot use the kernel).
var bpffsRoot string

func TestMain(m *testing.M) {
	kerneltest.Main(m, kerneltest.Options{Prefix: netnsPrefix, BPFFS: &bpffsRoot})
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

// hasNetfilter reports whether the kernel has what netfilter mode needs, by the feature probes of
// Probe, for tests that compare another mode with netfilter where they can and run without it on
// older kernels.
func hasNetfilter(t testing.TB) bool {
	t.Helper()
	f, err := Probe()
	if err != nil {
		t.Fatalf("probing the kernel: %v", err)
	}
	return f.Netfilter && f.BTF
}

// requireTCX skips t when the kernel reports no tcx links (Linux 6.6), by the probe of Probe;
// TestProbeMatchesKernelVersion fails where the probe denies what the kernel has.
func requireTCX(t testing.TB) {
	t.Helper()
	f, err := Probe()
	if err != nil {
		t.Fatalf("probing the kernel: %v", err)
	}
	if !f.TCX {
		t.Skipf("kernel lacks tcx links (probe: %+v; tcx came in Linux 6.6): the clsact subtest covers this kernel", f)
	}
}
