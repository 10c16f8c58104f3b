package counter

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
)

func TestHookPinNames(t *testing.T) {
	for _, h := range []hook{
		{kind: hookNF4, netns: 4026531840},
		{kind: hookNF6, netns: 1},
		{kind: hookTCX, netns: 4026532176, ifname: "lxc1234abcd"},
		{kind: hookTCX, netns: 7, ifname: "eth0.100"}, // dots are refused by bpffs
		{kind: hookTCX, netns: 7, ifname: "veth-a_b"},
		{kind: hookCls, netns: 4026532176, ifname: "cali12345.6"},
		{kind: hookTCXEgress, netns: 7, ifname: "eth1"},
		{kind: hookClsEgress, netns: 7, ifname: "flannel.1"},
	} {
		name := h.String()
		if strings.Contains(name, ".") {
			t.Errorf("%+v: pin name %q has a dot, which bpffs refuses", h, name)
		}
		got, err := parseHook(name)
		if err != nil || got != h {
			t.Errorf("parseHook(%q) = %+v, %v; want %+v", name, got, err, h)
		}
	}
	for _, bad := range []string{"", "nf4", "nf4-x", "nf4-1-6c6f", "tcx-1", "tcx-1-zz", "tcx-1-", "cls-1", "cls-1-", "tcxe-1", "tcxe-1-", "clse-1", "clse-1-zz", "xdp-1", "prog"} {
		if h, err := parseHook(bad); err == nil {
			t.Errorf("parseHook(%q) = %+v, want an error", bad, h)
		}
	}
}

func TestGenerationDirNames(t *testing.T) {
	for _, tc := range []struct {
		name string
		gen  uint32
		id   string
		ok   bool
	}{
		{genDirName(1, "0123456789ab"), 1, "0123456789ab", true},
		{genDirName(maxGeneration, "abc"), maxGeneration, "abc", true},
		{"gen-", 0, "", false},
		{"gen-1", 0, "", false},
		{"gen-1-", 0, "", false},
		{"gen-x-abc", 0, "", false},
		{"gen-2147483648-abc", 0, "", false}, // beyond 31 bits
		{"flows4_a", 0, "", false},
	} {
		gen, id, ok := parseGenDir(tc.name)
		if ok != tc.ok || (ok && (gen != tc.gen || id != tc.id)) {
			t.Errorf("parseGenDir(%q) = %d, %q, %v; want %d, %q, %v", tc.name, gen, id, ok, tc.gen, tc.id, tc.ok)
		}
	}
}

func TestNextGeneration(t *testing.T) {
	for owner, want := range map[uint32]uint32{0: 1, 1: 2, maxGeneration - 1: maxGeneration, maxGeneration: 1} {
		if got := nextGeneration(owner); got != want {
			t.Errorf("nextGeneration(%d) = %d, want %d", owner, got, want)
		}
	}
}

// The loader finds the placeholder in both compiled programs; without it a
// program would never own the maps.
func TestPatchGeneration(t *testing.T) {
	spec, err := loadCounter()
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range spec.Programs {
		if err := patchGeneration(p, 12345); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		left, set := 0, 0
		for _, ins := range p.Instructions {
			if ins.OpCode.ALUOp() == asm.Mov && ins.Constant == generationPlaceholder {
				left++
			}
			if ins.OpCode.ALUOp() == asm.Mov && ins.Constant == 12345 {
				set++
			}
		}
		if left != 0 || set == 0 {
			t.Errorf("%s: %d placeholders left, %d set after patching", name, left, set)
		}
		if err := patchGeneration(p, 1); err == nil {
			t.Errorf("%s: patching twice found a placeholder again", name)
		}
	}
}

func TestProgramIDCoversWhatChangesBehaviour(t *testing.T) {
	base := programID([]byte("elf"), "count_nf", ModeNetfilter, 90)
	for name, other := range map[string]string{
		"object":   programID([]byte("elf2"), "count_nf", ModeNetfilter, 90),
		"program":  programID([]byte("elf"), "count_tc", ModeTC, 90),
		"priority": programID([]byte("elf"), "count_nf", ModeNetfilter, 80),
	} {
		if other == base {
			t.Errorf("another %s gives the same program id %s", name, base)
		}
	}
	if again := programID([]byte("elf"), "count_nf", ModeNetfilter, 90); again != base {
		t.Errorf("programID is not deterministic: %s then %s", base, again)
	}
	// tc programs have no priority: changing the setting changes nothing.
	if a, b := programID([]byte("elf"), "count_tc", ModeTC, 90), programID([]byte("elf"), "count_tc", ModeTC, 80); a != b {
		t.Errorf("tc program ids differ by priority: %s, %s", a, b)
	}
}
