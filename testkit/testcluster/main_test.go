package testcluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestMain gives the run its own TMPDIR, so every cluster dir (and every
// etcd/kube-apiserver command line, which names its dir) is under one root,
// then fails the run if any process still mentions that root, any child of
// this process is still alive, or a cluster dir was not removed.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		helperStartAndHang()
		os.Exit(0)
	}
	root, err := os.MkdirTemp("", "zonetoll-testcluster-run-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating test root:", err)
		os.Exit(2)
	}
	os.Setenv("TMPDIR", root)
	code := m.Run()
	if leaks := leakedProcesses(root); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: processes left behind by the tests:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	if dirs, _ := filepath.Glob(filepath.Join(root, "zonetoll-testcluster-*")); len(dirs) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: cluster dirs left behind: %v\n", dirs)
		code = 1
	}
	os.RemoveAll(root)
	os.Exit(code)
}

// leakedProcesses scans /proc for live processes whose command line mentions
// root or whose parent is this process.
func leakedProcesses(root string) []string {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return []string{"cannot scan /proc: " + err.Error()}
	}
	var leaks []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		ppid, state, ok := procStat(pid)
		if !ok {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		cmd := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if ppid == self || strings.Contains(cmd, root) {
			leaks = append(leaks, fmt.Sprintf("pid %d (state %s, ppid %d): %.200s", pid, state, ppid, cmd))
		}
	}
	return leaks
}

// procStat returns the parent pid and state of pid from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state string, ok bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", false
	}
	// The command name is in parentheses and may contain spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, "", false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 2 {
		return 0, "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		return 0, "", false
	}
	return ppid, fields[0], true
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != "Z"
}
