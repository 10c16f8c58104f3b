package netns

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Legacy ethtool commands (linux/ethtool.h), understood by every kernel: TSO
// covers all TCP segmentation offloads (NETIF_F_ALL_TSO), GSO the generic
// software segmentation of locally built skbs.
const (
	ethtoolSTSO = 0x1f
	ethtoolSGSO = 0x24
)

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data: the kernel reads the name and
// the pointer, and copies no more than sizeof(struct ifreq) (40 bytes).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

// SetSegmentationOffload turns TCP segmentation offload and generic
// segmentation offload of interface dev on or off in the calling thread's
// namespace (wrap it in Do for another), like `ethtool -K dev tso off gso
// off`, without needing ethtool. With TSO off the kernel cuts a forwarded
// TCP GSO skb into wire packets in software when dev transmits it (after
// netfilter's POST_ROUTING and tc egress), so dev's transmit counters count
// wire packets and bytes; with it on a veth passes the skb through whole and
// counts it as one packet of skb->len bytes.
func SetSegmentationOffload(dev string, on bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening a socket for ethtool on %s: %w", dev, err)
	}
	defer unix.Close(fd)
	if len(dev) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q longer than %d bytes", dev, unix.IFNAMSIZ-1)
	}
	var v uint32
	if on {
		v = 1
	}
	for _, c := range []struct {
		cmd  uint32
		name string
	}{{ethtoolSTSO, "tso"}, {ethtoolSGSO, "gso"}} {
		val := ethtoolValue{cmd: c.cmd, data: v}
		var ifr ifreqData
		copy(ifr.name[:], dev)
		ifr.data = unsafe.Pointer(&val)
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("setting %s %v on %s (ethtool ioctl): %w", c.name, on, dev, errno)
		}
	}
	return nil
}
