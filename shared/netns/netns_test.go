package netns_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/shared/netns"
	"github.com/zonetoll/zonetoll/testkit/gate"
)

// netnsPrefix names the namespaces these tests create, so leftovers of a
// crashed run are found and removed.
const netnsPrefix = "ztnetns-"

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// newNetns makes a network namespace for one test (gating on root) and returns its path.
func newNetns(t *testing.T) string {
	t.Helper()
	return addNetns(t, fmt.Sprintf("%s%d-%s", netnsPrefix, os.Getpid(), t.Name()))
}

// addNetns makes the named namespace, deleted when t ends, and returns its path. What a killed run
// of these tests left goes first.
func addNetns(t *testing.T, name string) string {
	t.Helper()
	gate.Root(t)
	netns.RemoveStale(netnsPrefix, false)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	return filepath.Join(netns.Dir, name)
}

// threadsOutside lists the process's threads whose network namespace is not
// the process's own.
func threadsOutside(t *testing.T) []string {
	t.Helper()
	own := inode(t, "/proc/self/ns/net")
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		var st unix.Stat_t
		// A thread may end between listing and stat.
		if unix.Stat(filepath.Join("/proc/self/task", task.Name(), "ns/net"), &st) == nil && st.Ino != own {
			out = append(out, task.Name())
		}
	}
	return out
}

func TestDoInPlace(t *testing.T) {
	want := errors.New("from fn")
	var tid int
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := netns.Do("", func() error { tid = unix.Gettid(); return want }); err != want {
		t.Errorf("Do(\"\") = %v, want fn's error", err)
	}
	if tid != unix.Gettid() {
		t.Errorf("Do(\"\") ran fn on thread %d, want the caller's %d", tid, unix.Gettid())
	}
}

func TestDoMissingNamespace(t *testing.T) {
	ran := false
	err := netns.Do(filepath.Join(netns.Dir, "ztnetns-never-created"), func() error { ran = true; return nil })
	if !errors.Is(err, os.ErrNotExist) || ran {
		t.Errorf("Do on a missing namespace = %v (fn ran: %v), want os.ErrNotExist and fn not run", err, ran)
	}
}

// Do runs fn in the namespace and leaves no thread of the process there,
// however fn ends, with many calls at once.
func TestDoSwitchesAndReturns(t *testing.T) {
	path := newNetns(t)
	want := inode(t, path)
	fnErr := errors.New("from fn")

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 64 {
		wg.Go(func() {
			var got uint64
			err := netns.Do(path, func() error {
				var st unix.Stat_t
				if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
					return err
				}
				got = st.Ino
				if i%2 == 1 {
					return fnErr
				}
				return nil
			})
			switch {
			case i%2 == 1 && err != fnErr:
				errs <- fmt.Errorf("call %d: Do = %v, want fn's error", i, err)
			case i%2 == 0 && err != nil:
				errs <- fmt.Errorf("call %d: Do = %v", i, err)
			case got != want:
				errs <- fmt.Errorf("call %d: fn ran in netns %d, want %d", i, got, want)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	t.Run("panic", func(t *testing.T) {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want fn's panic", v)
			}
		}()
		_ = netns.Do(path, func() error { panic("boom") })
		t.Errorf("Do returned after fn panicked")
	})
	t.Run("goexit", func(t *testing.T) {
		if err := netns.Do(path, func() error { runtime.Goexit(); return nil }); !errors.Is(err, netns.ErrGoexit) {
			t.Errorf("Do after fn called Goexit = %v, want ErrGoexit", err)
		}
	})
	if left := threadsOutside(t); len(left) > 0 {
		t.Errorf("threads %v still in another network namespace after Do returned", left)
	}
}

// A thread fn locked again (it changed something it cannot undo) ends after
// Do instead of serving other goroutines.
func TestDoDiscardsALockedThread(t *testing.T) {
	path := newNetns(t)
	// A goroutine that ends locked to the process's main thread wedges that thread instead of ending
	// it (the runtime never exits the main thread); it is never used again either, but there is no
	// task to watch disappear. Try again until the goroutine ran on another thread.
	tid := os.Getpid()
	for try := 0; tid == os.Getpid() && try < 20; try++ {
		if err := netns.Do(path, func() error {
			runtime.LockOSThread()
			tid = unix.Gettid()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	if tid == os.Getpid() {
		t.Fatal("every try ran on the main thread")
	}
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	// The runtime ends the thread after the goroutine; poll, bounded.
	for range 500 {
		if _, err := os.Stat(task); errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("thread %d still exists after its goroutine ended locked", tid)
}

// deadPid is the pid of a process that has ended (a child reaped here; the kernel hands pids out in
// rising order, so it is not reused within a test).
func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestStale(t *testing.T) {
	self, dead := os.Getpid(), deadPid(t)
	tests := []struct {
		name string
		ours bool
		want bool
	}{
		{fmt.Sprintf("zt-%d-a", self), true, true},          // this run, at its end
		{fmt.Sprintf("zt-%d-a", self), false, false},        // this run, still using it
		{fmt.Sprintf("zt-%d-a", os.Getppid()), true, false}, // a live run
		{fmt.Sprintf("zt-%d-a", dead), false, true},         // a run that is gone
		{fmt.Sprintf("zt-%d", dead), false, false},          // not <prefix><pid>-…
		{"zt-abc-a", false, false},
		{"zt-0-a", false, false},
		{"zt--1-a", false, false},
		{fmt.Sprintf("other-%d-a", dead), false, false},
	}
	for _, tt := range tests {
		if got := netns.Stale(tt.name, "zt-", tt.ours); got != tt.want {
			t.Errorf("Stale(%q, ours %v) = %v, want %v", tt.name, tt.ours, got, tt.want)
		}
	}
}

// RemoveStale deletes a namespace of a run that is gone and keeps those of live runs, this one's
// included unless asked.
func TestRemoveStale(t *testing.T) {
	prefix := netnsPrefix + "stale-"
	gone := addNetns(t, fmt.Sprintf("%s%d-a", prefix, deadPid(t)))
	live := addNetns(t, fmt.Sprintf("%s%d-a", prefix, os.Getppid()))
	ours := addNetns(t, fmt.Sprintf("%s%d-a", prefix, os.Getpid()))
	if got := netns.RemoveStale(prefix, false); len(got) != 1 || got[0] != gone {
		t.Errorf("RemoveStale(ours false) removed %v, want only %s", got, gone)
	}
	if got := netns.RemoveStale(prefix, true); len(got) != 1 || got[0] != ours {
		t.Errorf("RemoveStale(ours true) removed %v, want only %s", got, ours)
	}
	for path, want := range map[string]bool{gone: false, live: true, ours: false} {
		if _, err := os.Stat(path); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", path, err == nil, want)
		}
	}
}
