// Package reporttest makes the small agent reports the spool and sender tests queue and send. It is
// imported only by tests.
package reporttest

import (
	"net/netip"
	"time"

	"github.com/zonetoll/zonetoll/shared/report"
)

// Boot is the boot id of every report Report makes.
var Boot = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// Report is report seq of node-a, one flow carrying bytes traffic bytes in the 10 s window seq; reports
// of equal-length byte counts encode to the same size.
func Report(seq, bytes uint64) *report.Report {
	start := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).Add(time.Duration(seq) * 10 * time.Second)
	return &report.Report{
		Node: "node-a", BootID: Boot, Sequence: seq,
		WindowStart: start, WindowEnd: start.Add(10 * time.Second),
		Flows: []report.Flow{{
			Src:   report.AddrFrom(netip.MustParseAddr("198.18.0.2")),
			Dst:   report.AddrFrom(netip.MustParseAddr("198.18.1.2")),
			Bytes: bytes, Packets: 1,
		}},
	}
}
