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
