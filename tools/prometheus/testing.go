package prometheus

import (
	"os"
	"testing"
)

// BinariesT returns the built binaries for a test. It skips only when
// ZONETOLL_SKIP_CLUSTER_TESTS=1; otherwise missing binaries fail the test with
// the command that builds them, so CI cannot pass without running the checks.
func BinariesT(t testing.TB) Binaries {
	t.Helper()
	if os.Getenv(EnvSkip) == "1" {
		t.Skipf("%s=1: skipping test that needs upstream prometheus/promtool", EnvSkip)
	}
	bins, err := Installed("")
	if err != nil {
		t.Fatalf("upstream promtool needed: %v", err)
	}
	return bins
}
