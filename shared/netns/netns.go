// Package netns runs code inside another network namespace without moving
// the process. Everything that takes "the namespace of the caller" from the
// calling thread (BPF netfilter and tcx links, interface lookups, netlink,
// sockets, /proc/thread-self/net) can then act on a namespace by its path.
package netns

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is where `ip netns` keeps the namespaces it names.
const Dir = "/run/netns"

// ErrGoexit is returned by Do when fn called runtime.Goexit (for example
// t.FailNow from a goroutine other than the test's, which testing forbids).
var ErrGoexit = errors.New("netns: fn called runtime.Goexit")

// Do runs fn on an OS thread switched into the network namespace at path
// (for example /run/netns/<name> or /proc/<pid>/ns/net), then switches the
// thread back. With path "" fn runs on the calling goroutine, in the
// caller's namespace. What fn creates in the namespace (sockets, links)
// stays there for its whole life, whichever thread uses it later.
//
// fn runs on a goroutine of its own, locked to its thread. If switching back
// fails, that goroutine ends still locked, and the runtime then ends the
// thread instead of handing it, in the wrong namespace, to other goroutines.
// fn may use the same rule for changes of its own that it cannot undo (CPU
// affinity, say): calling runtime.LockOSThread without the matching unlock
// makes the thread end after fn. A panic in fn is raised again in the caller.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", path, err)
	}
	defer unix.Close(target)

	type result struct {
		err      error
		panicked bool
		panicVal any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("opening this thread's netns: %w", err)}
			return
		}
		defer unix.Close(orig)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("entering netns %s: %w", path, err)}
			return
		}
		var r result
		returned := false
		// Deferred so that the thread goes back after a panic or Goexit in
		// fn too; the result is sent last, whatever fn did.
		defer func() {
			if !returned {
				if v := recover(); v != nil {
					r = result{panicked: true, panicVal: v}
				} else {
					r = result{err: ErrGoexit}
				}
			}
			if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
				// Still locked: the thread ends with this goroutine.
				r.err = errors.Join(r.err, fmt.Errorf("returning from netns %s: %w", path, err))
			} else {
				runtime.UnlockOSThread()
			}
			done <- r
		}()
		r.err = fn()
		returned = true
	}()
	r := <-done
	if r.panicked {
		panic(r.panicVal)
	}
	return r.err
}

// QuietSysctls are the sysctls (for `sysctl -w`) that keep a fresh namespace from sending anything of
// its own on its links: no duplicate address detection, no router solicitations, no unsolicited MLD or
// IGMP reports. Tests and benchmarks that count packets to the byte set them in every namespace they
// make, so each packet on a link is one they sent.
func QuietSysctls() []string {
	return []string{
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
		"net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0",
		"net.ipv6.conf.default.mldv1_unsolicited_report_interval=0",
		"net.ipv6.conf.default.mldv2_unsolicited_report_interval=0",
		"net.ipv4.conf.default.igmpv2_unsolicited_report_interval=0",
		"net.ipv4.conf.default.igmpv3_unsolicited_report_interval=0",
	}
}

// Stale reports whether name is <prefix><pid>-… of a process that no longer exists, or of this
// process when ours is true. Tests, benchmarks and the demo name what they make that way, so what a
// run killed before its cleanup left behind is found by the next run, and a run still going beside it
// (its pid alive) keeps its own.
func Stale(name, prefix string, ours bool) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		return ours
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}

// RemoveStale deletes the named namespaces (in Dir) that are Stale(name, prefix, ours), with `ip
// netns del`, and returns the paths it deleted. Deleting a namespace removes its links, and their
// peers, with it.
func RemoveStale(prefix string, ours bool) []string {
	var removed []string
	ents, _ := os.ReadDir(Dir)
	for _, e := range ents {
		if Stale(e.Name(), prefix, ours) && exec.Command("ip", "netns", "del", e.Name()).Run() == nil {
			removed = append(removed, filepath.Join(Dir, e.Name()))
		}
	}
	return removed
}
