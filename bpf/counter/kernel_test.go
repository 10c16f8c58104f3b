package counter

import (
	"testing"

	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

// netnsPrefix names every network namespace these tests create, so leftovers
// of a crashed run are found and removed.
const netnsPrefix = "ztbpf-"

func TestMain(m *testing.M) {
	kerneltest.Main(m, netnsPrefix)
}

// requireMode gates on what every kernel test needs (kerneltest.Require), then skips t when the
// kernel reports, through the feature probes of Probe, that it lacks what mode needs: BPF netfilter
// programs (Linux 6.4) and BTF for ModeNetfilter. It never skips on a guess:
// TestProbeMatchesKernelVersion fails where the probes deny a feature the kernel has.
func requireMode(t testing.TB, m Mode) {
	t.Helper()
	kerneltest.Require(t)
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

// eachTCFlavor runs test once with tcx links and once with clsact filters, as subtests named tcx and
// clsact; test (or tcBesideNetfilter) skips the tcx one through requireTCX where the kernel lacks tcx.
func eachTCFlavor(t *testing.T, test func(t *testing.T, tcx bool)) {
	kerneltest.Require(t)
	for _, flavor := range []string{"tcx", "clsact"} {
		t.Run(flavor, func(t *testing.T) { test(t, flavor == "tcx") })
	}
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
