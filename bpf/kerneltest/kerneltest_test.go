package kerneltest

import (
	"fmt"
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

func TestOwnerGone(t *testing.T) {
	self := os.Getpid()
	tests := []struct {
		name string
		want bool
	}{
		{fmt.Sprintf("zt-%d-a", self), true},          // this process: cleaned after its run
		{fmt.Sprintf("zt-%d-a", os.Getppid()), false}, // a live process: keep
		{"zt-999999999-a", true},                      // no such process
		{"zt-abc-a", false},                           // not ours
		{"other-1-a", false},
		{"zt-12", false},
	}
	for _, tt := range tests {
		if got := ownerGone(tt.name, "zt-"); got != tt.want {
			t.Errorf("ownerGone(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}
