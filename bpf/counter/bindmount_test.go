package counter

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/zonetoll/zonetoll/bpf/kerneltest"
)

// TestPinDirOnBindMountedSubdirectory runs the counter as the DaemonSet mounts its pins: the host's
// bpffs subdirectory (hostPath /sys/fs/bpf/zonetoll) bind-mounted at a path outside bpffs inside the
// container, so the agent sees its own directory and nothing else of the host's bpffs. The pin dir is
// still bpffs (a bind mount keeps the file system), the maps pinned through the mount survive a restart
// and keep counting, the pins are visible at the host's path (where `flowagent uninstall --pin-dir`
// runs), and Uninstall empties the directory without trying to remove the mount point itself.
func TestPinDirOnBindMountedSubdirectory(t *testing.T) {
	kerneltest.Require(t)
	requireMode(t, ModeNetfilter)
	tp := newTopo(t)
	hostDir := filepath.Join(kerneltest.PinDir(t), "zonetoll") // the host's /sys/fs/bpf/zonetoll
	if err := os.Mkdir(hostDir, 0o755); err != nil {           // what hostPath type DirectoryOrCreate does
		t.Fatal(err)
	}
	inContainer := t.TempDir() // the container's mount point, on a file system that is not bpffs
	if err := unix.Mount(hostDir, inContainer, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting %s at %s: %v", hostDir, inContainer, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(inContainer, unix.MNT_DETACH) })

	total := map[Key]Value{}
	collect := func(k Key, v Value) { total[k] = addValue(total[k], v) }
	before := tp.quiesce()
	c := tp.loadAttached(Config{MaxFlows: 1024, PinDir: inContainer, Mode: ModeNetfilter})
	tp.sendUDP(false, 100, 200, 8001)
	tp.quiesce()
	if err := c.Close(); err != nil {
		t.Fatalf("closing first counter: %v", err)
	}
	hostPins, err := os.ReadDir(hostDir)
	if err != nil || len(hostPins) == 0 {
		t.Fatalf("pins at the host's path %s: %v, %v; want the agent's pins", hostDir, hostPins, err)
	}
	// Restart through the same mount: the pinned maps are reused and kept counting meanwhile.
	c = loadAt(t, tp, inContainer)
	tp.sendUDP(true, 200, 300, 8002)
	after := tp.quiesce()
	for range 2 {
		if _, err := c.Drain(context.Background(), collect); err != nil {
			t.Fatal(err)
		}
	}
	got := tp.podFlows(t, total)
	pkts, bytes := forwardedBytes(t, before, after)
	if got.Packets != pkts || got.Bytes != bytes {
		t.Errorf("counted %d packets / %d bytes across the restart, node forwarded %d / %d", got.Packets, got.Bytes, pkts, bytes)
	}
	if err := c.Uninstall(); err != nil {
		t.Fatalf("uninstalling through the mount: %v", err)
	}
	if ents, _ := os.ReadDir(hostDir); len(ents) != 0 {
		t.Errorf("pins left at the host's path after Uninstall: %v", ents)
	}
}

func loadAt(t *testing.T, tp *topo, dir string) *Counter {
	t.Helper()
	c := tp.loadAttached(Config{MaxFlows: 1024, PinDir: dir, Mode: ModeNetfilter})
	t.Cleanup(func() { c.Close() })
	return c
}
