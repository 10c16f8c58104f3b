package counter

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Features are the kernel capabilities the counter depends on.
type Features struct {
	// BTF: /sys/kernel/btf/vmlinux exists (needed for CO-RE and kfuncs).
	BTF bool
	// Netfilter: BPF netfilter programs and links (6.4; same release).
	Netfilter bool
	// TCX: tcx links (6.6).
	TCX bool
}

// Probe checks the running kernel. It creates no lasting state.
func Probe() (Features, error) {
	var f Features
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err == nil {
		f.BTF = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return f, fmt.Errorf("probing btf: %w", err)
	}

	switch err := features.HaveProgramType(ebpf.Netfilter); {
	case err == nil:
		f.Netfilter = true
	case !errors.Is(err, ebpf.ErrNotSupported):
		return f, fmt.Errorf("probing netfilter programs: %w", err)
	}

	ok, err := probeTCX()
	if err != nil {
		return f, fmt.Errorf("probing tcx: %w", err)
	}
	f.TCX = ok
	return f, nil
}

// probeTCX attaches a trivial program to a nonexistent interface: the kernel
// answers ENODEV when it knows tcx links, which the library turns into
// ErrNotSupported when it does not.
func probeTCX() (bool, error) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SchedCLS,
		License:      "MIT",
		Instructions: returnZero,
	})
	if err != nil {
		return false, fmt.Errorf("loading probe program: %w", err)
	}
	defer prog.Close()
	l, err := link.AttachTCX(link.TCXOptions{Interface: 0x7fffffff, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		_ = l.Close()
		return true, nil
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return false, nil
	}
	// ENODEV: the link type exists, the interface does not.
	if errors.Is(err, unix.ENODEV) {
		return true, nil
	}
	return false, err
}

// resolveMode turns ModeAuto into a concrete mode and reports whether tc
// mode can use tcx links (else classic clsact filters).
func resolveMode(m Mode) (Mode, bool, error) {
	f, err := Probe()
	if err != nil {
		return "", false, err
	}
	switch {
	case m != ModeAuto:
		return m, f.TCX, nil
	// The netfilter program relies on BTF (CO-RE, kfuncs); tc does not.
	case f.Netfilter && f.BTF:
		return ModeNetfilter, f.TCX, nil
	}
	return ModeTC, f.TCX, nil
}

var returnZero = asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}
