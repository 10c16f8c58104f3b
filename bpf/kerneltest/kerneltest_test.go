package kerneltest

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

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

func TestMain(m *testing.M) { Main(m, "ztkt-") }

func TestLeakedFDs(t *testing.T) {
	before := map[string]string{"3": "anon_inode:bpf-map", "4": "anon_inode:bpf-prog"}
	tests := []struct {
		name  string
		after map[string]string
		want  []string
	}{
		{"nothing new", map[string]string{"3": "anon_inode:bpf-map", "4": "anon_inode:bpf-prog"}, nil},
		{"closed", map[string]string{}, nil},
		{"a link left open", map[string]string{"3": "anon_inode:bpf-map", "4": "anon_inode:bpf-prog", "9": "anon_inode:bpf_link"},
			[]string{"fd 9 (bpf_link)"}},
		{"a number reused for another object", map[string]string{"3": "anon_inode:bpf-prog", "10": "anon_inode:bpf-map"},
			[]string{"fd 10 (bpf-map)", "fd 3 (bpf-prog)"}},
	}
	for _, tt := range tests {
		if got := leakedFDs(before, tt.after); !slices.Equal(got, tt.want) {
			t.Errorf("%s: leakedFDs = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// envLeak makes TestLeakForMain leak a map, in the child process that
// TestMainFailsOnLeakedFD starts.
const envLeak = "ZONETOLL_KERNELTEST_LEAK"

func TestLeakForMain(t *testing.T) {
	if os.Getenv(envLeak) != "1" {
		t.Skip("only run by TestMainFailsOnLeakedFD")
	}
	if _, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1}); err != nil {
		t.Fatal(err)
	}
}

// A test that passes but leaves a BPF map open fails the run through Main.
func TestMainFailsOnLeakedFD(t *testing.T) {
	Require(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeakForMain$", "-test.count=1")
	cmd.Env = append(os.Environ(), envLeak+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "leaked 1 BPF file descriptors: fd ") || !strings.Contains(string(out), "(bpf-map)") {
		t.Errorf("a test run that leaks a map: err %v, output:\n%s\nwant a failure naming the leaked map", err, out)
	}
}
