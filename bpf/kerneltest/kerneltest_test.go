package kerneltest

import (
	"os"
	"testing"
)

// On the machines this project runs on (CI runs as root on a BTF kernel) the kernel is available; this
// test fails when EnvRequire=1 and it is not, which is the point of the variable.
func TestUnavailable(t *testing.T) {
	why := Unavailable()
	if os.Geteuid() != 0 && why != "not root" {
		t.Errorf("Unavailable() = %q for a non-root user, want \"not root\"", why)
	}
	if os.Getenv(EnvRequire) == "1" && why != "" {
		t.Errorf("%s=1 but the kernel tests cannot run: %s", EnvRequire, why)
	}
}
