package kerneltest

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"github.com/zonetoll/zonetoll/testkit/gate"
)

// On the machines this project runs on (CI runs as root on a BTF kernel) the kernel is available; under
// make test the gate fails this test when it is not.
func TestUnavailable(t *testing.T) {
	why := Unavailable()
	if os.Geteuid() != 0 && why != "not root" {
		t.Errorf("Unavailable() = %q for a non-root user, want \"not root\"", why)
	}
	if why != "" {
		gate.Need(t, "root and a BTF kernel", errors.New(why), "run as root on a kernel with BTF")
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
