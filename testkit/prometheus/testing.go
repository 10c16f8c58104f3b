package prometheus

import "github.com/zonetoll/zonetoll/testkit/gate"

// BinariesT returns the built upstream prometheus and promtool for a test, or skips/fails it through
// the gate with the command that builds them.
func BinariesT(t gate.TB) Binaries {
	t.Helper()
	bins, err := Installed("")
	gate.Need(t, "upstream prometheus and promtool", err, "make testcluster")
	return bins
}
