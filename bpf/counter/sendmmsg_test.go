package counter

import (
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr (x/sys/unix has no sendmmsg).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// sendBatched sends count datagrams of size bytes from pod a to pod b with
// sendmmsg, batch datagrams per system call. On this VM (page-table
// isolation without PCID) every system call empties the TLB, so batches show
// what a packet costs with warm TLB entries, one datagram per call with cold
// ones.
func (tp *topo) sendBatched(v6 bool, count, size, batch, port int) {
	src, dst := tp.podAddr["a4"], tp.podAddr["b4"]
	if v6 {
		src, dst = tp.podAddr["a6"], tp.podAddr["b6"]
	}
	var l, c *net.UDPConn
	tp.inNS(tp.b, func() (err error) {
		l, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		return err
	})
	defer l.Close()
	tp.inNS(tp.a, func() (err error) {
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		return err
	})
	defer c.Close()
	buf := make([]byte, size)
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(size)
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	rc, _ := c.SyscallConn()
	sent := 0
	for sent < count {
		n := min(batch, count-sent)
		var r uintptr
		rc.Write(func(fd uintptr) bool {
			r, _, _ = unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
			return true
		})
		if int(r) <= 0 {
			continue
		}
		sent += int(r)
	}
}
