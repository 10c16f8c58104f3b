package tcfollow

import (
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// BenchmarkFollowLatency: the time from adding a default route (in a table of its own, as the
// AWS VPC CNI does for a new ENI) on a new interface to the counter being attached at its egress,
// and from deleting the interface to it being let go. The follower runs on a real tc-mode counter.
//
//	sudo go test -run XXX -bench FollowLatency -benchtime 50x ./internal/tcfollow
func BenchmarkFollowLatency(b *testing.B) {
	n := newNode(b)
	c := loadCounter(b)
	f := startFollower(b, n, c, prometheus.NewRegistry())
	changed := f.Changed()
	waitFor(b, f, changed, "up0")
	nsh, err := netns.GetFromPath("/run/netns/" + n.node)
	if err != nil {
		b.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	_, gwNet, _ := net.ParseCIDR("198.18.250.0/24")
	var attach, release time.Duration
	for b.Loop() {
		b.StopTimer()
		// A veth whose peer stays in the node: no traffic is needed, only an interface.
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "bench0"}, PeerName: "bench0p"}); err != nil {
			b.Fatal(err)
		}
		l, err := h.LinkByName("bench0")
		if err != nil {
			b.Fatal(err)
		}
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.18.250.1"), Mask: gwNet.Mask}}); err != nil {
			b.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: net.ParseIP("198.18.250.2"), Table: 250, Type: unix.RTN_UNICAST}); err != nil {
			b.Fatal(err)
		}
		waitFor(b, f, changed, "bench0", "up0")
		attach += time.Since(start)
		start = time.Now()
		if err := h.LinkDel(l); err != nil {
			b.Fatal(err)
		}
		waitFor(b, f, changed, "up0")
		release += time.Since(start)
	}
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "µs/attach")
	b.ReportMetric(float64(release.Microseconds())/float64(b.N), "µs/release")
}
