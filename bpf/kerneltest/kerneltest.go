// Package kerneltest is the one place that decides whether a test needing the kernel (root, a BTF
// kernel) may run here, for every module's kernel tests. It is imported only by tests.
package kerneltest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/shared/netns"
	"github.com/zonetoll/zonetoll/testkit/gate"
)

// Unavailable says why kernel tests cannot run, or "" when they can.
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return "kernel has no BTF (/sys/kernel/btf/vmlinux)"
	}
	return ""
}

// Require lets a kernel test go on, or skips/fails it through the test kit's gate (root and a BTF
// kernel; under make test and CI a missing one fails).
func Require(t testing.TB) {
	t.Helper()
	gate.Kernel(t)
}

// pinRoot is the private bpffs Main mounted for this test binary ("" before Main, or where kernel
// tests cannot run).
var pinRoot string

// Main is the TestMain of every package whose tests use BPF:
//
//	func TestMain(m *testing.M) { kerneltest.Main(m, "ztx-") }
//
// prefix names the package's network namespaces and bpffs mounts (<prefix><pid>-…): Main removes a
// dead run's leftovers before the tests and this run's after them, and mounts a private bpffs that
// PinDir hands out directories of. It fails the run when the tests leave BPF map, program or link
// file descriptors open that were not open before them: a leaked link keeps a hook attached, a leaked
// map its memory. It does not return.
func Main(m *testing.M, prefix string) {
	os.Exit(run(m, prefix))
}

func run(m *testing.M, prefix string) int {
	if Unavailable() == "" {
		RemoveLeftovers(prefix)
		defer RemoveLeftovers(prefix)
		dir, unmount, err := MountBPFFS(prefix)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer unmount()
		pinRoot = dir
	}
	before := bpfFDs()
	code := m.Run()
	if leaked := leakedFDs(before, bpfFDs()); len(leaked) > 0 && code == 0 {
		fmt.Fprintf(os.Stderr, "FAIL: the tests leaked %d BPF file descriptors: %s\n", len(leaked), strings.Join(leaked, ", "))
		code = 1
	}
	return code
}

// PinDir returns a fresh directory on the private bpffs of Main, removed when t ends. Call it after
// Require: where kernel tests cannot run there is no bpffs.
func PinDir(t testing.TB) string {
	t.Helper()
	if pinRoot == "" {
		t.Fatal("kerneltest.PinDir: no private bpffs (TestMain must call kerneltest.Main, after Require)")
	}
	dir, err := os.MkdirTemp(pinRoot, "pins-")
	if err != nil {
		t.Fatalf("creating a pin directory on the private bpffs: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// bpfFDs maps this process's open BPF map, program and link descriptors to
// what they are (readlink of /proc/self/fd/N: anon_inode:bpf-map,
// anon_inode:bpf-prog, anon_inode:bpf_link, …).
func bpfFDs() map[string]string {
	ents, _ := os.ReadDir("/proc/self/fd")
	out := map[string]string{}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err == nil && strings.HasPrefix(target, "anon_inode:bpf") {
			out[e.Name()] = target
		}
	}
	return out
}

// leakedFDs lists the descriptors of after that were not open as the same
// kind of object before, as "fd N (kind)", sorted.
func leakedFDs(before, after map[string]string) []string {
	var out []string
	for fd, target := range after {
		if before[fd] != target {
			out = append(out, fmt.Sprintf("fd %s (%s)", fd, strings.TrimPrefix(target, "anon_inode:")))
		}
	}
	slices.Sort(out)
	return out
}

// MountBPFFS mounts a private bpffs for one test binary in a new temporary directory whose name starts
// with prefix and the process id (so a later run can tell a dead run's leftovers from a live one's), and
// returns it with the function that unmounts and removes it.
func MountBPFFS(prefix string) (dir string, unmount func(), err error) {
	dir, err = os.MkdirTemp("", fmt.Sprintf("%sbpffs-%d-", prefix, os.Getpid()))
	if err != nil {
		return "", nil, fmt.Errorf("creating bpffs dir: %w", err)
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("mounting bpffs on %s: %w", dir, err)
	}
	return dir, func() {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		_ = os.Remove(dir)
	}, nil
}

// RemoveLeftovers deletes the network namespaces (<prefix><pid>-…) and private bpffs mounts
// (<prefix>bpffs-<pid>-…) of test runs whose process is gone, and this process's own. A crashed run
// leaves them behind; a run still going in parallel (its pid alive) keeps them.
func RemoveLeftovers(prefix string) {
	netns.RemoveStale(prefix, true)
	ents, _ := os.ReadDir(os.TempDir())
	for _, e := range ents {
		if netns.Stale(e.Name(), prefix+"bpffs-", true) {
			dir := filepath.Join(os.TempDir(), e.Name())
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			_ = os.Remove(dir)
		}
	}
}

// NetfilterHookFree reports whether a BPF program can attach at IPv4 NF_INET_POST_ROUTING with
// priority prio in the network namespace at netnsPath: it attaches a two-instruction program there
// and detaches it again. A hook and priority take one BPF program, so an error (EBUSY) means
// another program, such as a counter's pinned link, still holds it.
func NetfilterHookFree(netnsPath string, prio int32) error {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.Netfilter, AttachType: ebpf.AttachNetfilter, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	})
	if err != nil {
		return fmt.Errorf("loading the probe program: %w", err)
	}
	defer prog.Close()
	return netns.Do(netnsPath, func() error {
		l, err := link.AttachNetfilter(link.NetfilterOptions{
			Program: prog, ProtocolFamily: link.NetfilterProtoIPv4, Hook: link.NetfilterInetPostRouting, Priority: prio,
		})
		if err != nil {
			return err
		}
		return l.Close()
	})
}
