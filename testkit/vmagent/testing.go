package vmagent

import "github.com/zonetoll/zonetoll/testkit/gate"

// BinaryT returns the built upstream vmagent for a test, or skips/fails it
// through the gate with the command that builds it.
func BinaryT(t gate.TB) string {
	t.Helper()
	bin, err := Installed("")
	gate.Need(t, "upstream vmagent", err, "make testcluster")
	return bin
}
