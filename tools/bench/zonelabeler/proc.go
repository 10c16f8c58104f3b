package zonelabeler

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go supports (the kernel fixes it for user space whatever CONFIG_HZ is).
const clockTicks = 100

// usage is what the kernel accounts for a process.
type usage struct {
	PeakRSS uint64 // VmHWM, bytes
	RSS     uint64 // VmRSS, bytes
	// RSS split by what backs it: RssFile is mostly the executable's pages (a bigger binary costs
	// resident memory even when idle); RssAnon is the heap, stacks and the Go runtime's own memory.
	RSSFile    uint64
	RSSAnon    uint64
	CPUSeconds float64 // utime + stime
}

// readUsage reads a live process's peak RSS and CPU time from /proc.
func readUsage(pid int) (usage, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, fmt.Errorf("reading memory of process %d: %w", pid, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, fmt.Errorf("reading CPU time of process %d: %w", pid, err)
	}
	var u usage
	if u.PeakRSS, err = statusKiB(string(status), "VmHWM"); err != nil {
		return usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	for key, dst := range map[string]*uint64{"VmRSS": &u.RSS, "RssFile": &u.RSSFile, "RssAnon": &u.RSSAnon} {
		if *dst, err = statusKiB(string(status), key); err != nil {
			return usage{}, fmt.Errorf("process %d: %w", pid, err)
		}
	}
	ticks, err := cpuTicks(string(stat))
	if err != nil {
		return usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	u.CPUSeconds = float64(ticks) / clockTicks
	return u, nil
}

// statusKiB returns a "Key:  1234 kB" field of /proc/<pid>/status in bytes.
func statusKiB(status, key string) (uint64, error) {
	for line := range strings.SplitSeq(status, "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok || name != key {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("unexpected %s line %q", key, line)
		}
		kib, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parsing %s: %w", key, err)
		}
		return kib * 1024, nil
	}
	return 0, fmt.Errorf("no %s in /proc status", key)
}

// cpuTicks returns utime+stime from /proc/<pid>/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted from the last ')'.
func cpuTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat %q", stat)
	}
	utime, err := strconv.ParseUint(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing utime: %w", err)
	}
	stime, err := strconv.ParseUint(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing stime: %w", err)
	}
	return utime + stime, nil
}
