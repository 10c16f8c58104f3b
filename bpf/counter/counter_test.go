package counter

import (
	"context"
	"errors"
	"fmt"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
	"math"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"zero takes defaults", Config{}, ""},
		{"netfilter", Config{Mode: ModeNetfilter, Priority: -200}, ""},
		{"tc", Config{Mode: ModeTC}, ""},
		{"unknown mode", Config{Mode: "xdp"}, `mode "xdp"`},
		{"priority at source nat", Config{Priority: 100}, "priority 100"},
		{"priority after source nat", Config{Priority: 300}, "priority 300"},
		{"priority INT_MIN refused by kernel", Config{Priority: math.MinInt32}, "priority -2147483648"},
		{"highest allowed priority", Config{Priority: 99}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	want := Config{MaxFlows: DefaultMaxFlows, PinDir: DefaultPinDir, Priority: DefaultPriority, Mode: ModeAuto}
	if c != want {
		t.Errorf("defaults = %+v, want %+v", c, want)
	}
}

// Key and Value are read straight from the kernel in batches, so their
// layout must be the C structs' (as bpf2go generated them).
func TestLayoutMatchesProgram(t *testing.T) {
	var k Key
	var gk counterFlowKey
	var v Value
	var gv counterFlowValue
	checks := []struct {
		name      string
		got, want uintptr
	}{
		{"key size", unsafe.Sizeof(k), unsafe.Sizeof(gk)},
		{"key src", unsafe.Offsetof(k.Src), unsafe.Offsetof(gk.Src)},
		{"key dst", unsafe.Offsetof(k.Dst), unsafe.Offsetof(gk.Dst)},
		{"value size", unsafe.Sizeof(v), unsafe.Sizeof(gv)},
		{"value bytes", unsafe.Offsetof(v.Bytes), unsafe.Offsetof(gv.Bytes)},
		{"value packets", unsafe.Offsetof(v.Packets), unsafe.Offsetof(gv.Packets)},
		{"value segments", unsafe.Offsetof(v.Segments), unsafe.Offsetof(gv.Segments)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: Go %d, program %d", c.name, c.got, c.want)
		}
	}
	spec, err := loadCounter()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{counterMapFlowsA, counterMapFlowsB} {
		m := spec.Maps[name]
		if m.KeySize != uint32(unsafe.Sizeof(k)) || m.ValueSize != uint32(unsafe.Sizeof(v)) {
			t.Errorf("map %s: key %d value %d bytes, Go types %d and %d", name, m.KeySize, m.ValueSize, unsafe.Sizeof(k), unsafe.Sizeof(v))
		}
	}
}

func TestProbeMatchesKernelVersion(t *testing.T) {
	kerneltest.Require(t)
	f, err := Probe()
	if err != nil {
		t.Fatalf("Probe() = %v", err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	release := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(release, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("parsing kernel release %q: %v", release, err)
	}
	// Both features are in every 6.6+ kernel with BPF; the CI machine runs 6.18.
	if major > 6 || major == 6 && minor >= 6 {
		if !f.BTF || !f.Netfilter || !f.TCX {
			t.Errorf("kernel %s: Probe() = %+v, want all features", release, f)
		}
	}
	t.Logf("kernel %s: %+v", release, f)
}

func TestLoadAutoFollowsProbe(t *testing.T) {
	kerneltest.Require(t)
	f, err := Probe()
	if err != nil {
		t.Fatalf("Probe() = %v", err)
	}
	c := loadForTest(t, Config{MaxFlows: 16})
	want := ModeTC
	if f.Netfilter && f.BTF {
		want = ModeNetfilter
	}
	if c.Mode() != want {
		t.Errorf("auto mode chose %s with %+v, want %s", c.Mode(), f, want)
	}
	if want == ModeNetfilter {
		if err := c.AttachTC("", "lo"); err == nil || !strings.Contains(err.Error(), "mode netfilter") {
			t.Errorf("AttachTC on a netfilter counter = %v, want a mode error", err)
		}
	}
}

func TestAttachErrors(t *testing.T) {
	kerneltest.Require(t)
	tp := newTopo(t)
	c := loadForTest(t, Config{MaxFlows: 16, Mode: ModeNetfilter})
	if err := c.AttachNetfilter("/run/netns/" + netnsPrefix + "does-not-exist"); err == nil || !strings.Contains(err.Error(), "opening netns") {
		t.Errorf("attach to missing netns = %v, want an error naming the netns step", err)
	}
	if err := c.AttachNetfilter(nsPath(tp.node)); err != nil {
		t.Fatal(err)
	}
	// A second program at the same hook and priority is refused: operators
	// running another netfilter BPF program must pick another priority.
	same := loadForTest(t, Config{MaxFlows: 16, Mode: ModeNetfilter})
	err := same.AttachNetfilter(nsPath(tp.node))
	if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "attaching netfilter ipv4 at priority 90") {
		t.Errorf("second attach at the same priority = %v, want EBUSY naming the step", err)
	}
	other := loadForTest(t, Config{MaxFlows: 16, Mode: ModeNetfilter, Priority: 80})
	if err := other.AttachNetfilter(nsPath(tp.node)); err != nil {
		t.Errorf("attach at another priority = %v", err)
	}
	tc := loadForTest(t, Config{MaxFlows: 16, Mode: ModeTC})
	if err := tc.AttachTC(nsPath(tp.node), "nope0"); err == nil || !strings.Contains(err.Error(), "finding interface") {
		t.Errorf("AttachTC on a missing interface = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Drain(context.Background(), func(Key, Value) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Drain after Close = %v, want ErrClosed", err)
	}
}

func TestLoadRefusesPinDirOutsideBPFFS(t *testing.T) {
	kerneltest.Require(t)
	_, err := Load(context.Background(), Config{MaxFlows: 16, Mode: ModeNetfilter, PinDir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "not on bpffs") {
		t.Errorf("Load with a tmpfs pin dir = %v, want a bpffs error", err)
	}
}
