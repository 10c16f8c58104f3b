package app

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/services/flowagent/internal/tcfollow"
)

// features is counter.Features as the start report and errors print it.
type features counter.Features

func (f features) String() string {
	return fmt.Sprintf("btf=%v netfilter_links=%v tcx=%v", f.BTF, f.Netfilter, f.TCX)
}

// checkKernel probes the kernel before the counter loads, so that a node the agent cannot count on
// fails with the missing feature named, and raises the memory-lock limit that kernels before 5.11
// charge BPF maps to (the default 64 KiB or 8 MiB would fail the map creation with EPERM).
func checkKernel(mode counter.Mode) (kernel string, feats features, err error) {
	kernel = kernelRelease()
	f, err := counter.Probe()
	if err != nil {
		return kernel, feats, fmt.Errorf("probing kernel %s for BPF features (is the agent privileged, with CAP_BPF and CAP_NET_ADMIN?): %w", kernel, err)
	}
	feats = features(f)
	if mode == counter.ModeNetfilter {
		switch {
		case !f.Netfilter:
			return kernel, feats, fmt.Errorf("ZONETOLL_BPF_MODE=netfilter: kernel %s lacks netfilter BPF links (BPF_PROG_TYPE_NETFILTER, Linux 6.4+); set ZONETOLL_BPF_MODE=auto or tc", kernel)
		case !f.BTF:
			return kernel, feats, fmt.Errorf("ZONETOLL_BPF_MODE=netfilter: kernel %s has no BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF), which the netfilter program needs; set ZONETOLL_BPF_MODE=auto or tc", kernel)
		}
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return kernel, feats, fmt.Errorf("raising RLIMIT_MEMLOCK on kernel %s, which charges BPF maps to it before 5.11 (raising it needs CAP_SYS_RESOURCE, or a container runtime whose memlock limit is already unlimited): %w", kernel, err)
	}
	return kernel, feats, nil
}

// modeReason says why the counter runs in the mode it chose.
func modeReason(configured, chosen counter.Mode, kernel string, f features) string {
	switch {
	case configured != counter.ModeAuto:
		return "configured (ZONETOLL_BPF_MODE=" + string(configured) + ")"
	case chosen == counter.ModeNetfilter:
		return "kernel " + kernel + " has netfilter BPF links (6.4+) and BTF"
	case !f.Netfilter:
		return "kernel " + kernel + " lacks netfilter BPF links (needs 6.4)"
	case !f.BTF:
		return "kernel " + kernel + " has no BTF (/sys/kernel/btf/vmlinux), which the netfilter program needs"
	}
	return "netfilter unavailable"
}

// startReport is the one line the agent logs once it counts: mode, why, hooks and features.
func startReport(cfg *Config, ctr *counter.Counter, kernel string, f features, follower *tcfollow.Follower) []any {
	attrs := []any{
		"mode", ctr.Mode(),
		"reason", modeReason(counter.Mode(cfg.BPF.Mode), ctr.Mode(), kernel, f),
		"kernel", kernel,
		"btf", f.BTF, "netfilter_links", f.Netfilter, "tcx", f.TCX,
		"netns", netnsName(cfg.Netns),
	}
	if ctr.Mode() == counter.ModeNetfilter {
		return append(attrs, "hook", "netfilter POST_ROUTING ipv4+ipv6", "priority", cfg.BPF.Priority)
	}
	tcAttach := "clsact"
	if ctr.TCX() {
		tcAttach = "tcx"
	}
	interfaces := "follow"
	if len(cfg.BPF.TCInterfaces) > 0 {
		interfaces = "list"
	}
	var names []string
	for _, t := range follower.Attached() {
		names = append(names, t.Name+"("+string(t.Role)+")")
	}
	return append(attrs, "hook", "tc egress", "tc_attach", tcAttach, "interfaces", interfaces,
		"counting_on", strings.Join(names, ","))
}

func netnsName(path string) string {
	if path == "" {
		return "own"
	}
	return path
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}
