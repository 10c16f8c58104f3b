package report

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// goldenReport and goldenHex are the worked example of docs/wire-format.md.
var goldenHex = strings.Join([]string{
	"5a545250",                         // magic "ZTRP"
	"01",                               // version 1
	"00",                               // flags
	"02",                               // node name length 2
	"6e31",                             // "n1"
	"0102030405060708090a0b0c0d0e0f10", // boot id
	"0000000000000007",                 // sequence 7
	"000000003b9aca00",                 // window start 1e9 ns
	"0000000077359400",                 // window end 2e9 ns
	"01",                               // one flow
	"00000000000000000000ffffc6120001", // src ::ffff:198.18.0.1
	"fd000000000000000000000000000002", // dst fd00::2
	"ac02",                             // bytes 300
	"02",                               // packets 2
}, "")

func goldenReport() *Report {
	return &Report{
		Node:        "n1",
		BootID:      [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Sequence:    7,
		WindowStart: time.Unix(1, 0).UTC(),
		WindowEnd:   time.Unix(2, 0).UTC(),
		Flows: []Flow{{
			Src:     addr("198.18.0.1"),
			Dst:     addr("fd00::2"),
			Bytes:   300,
			Packets: 2,
		}},
	}
}

func addr(s string) Addr {
	return AddrFrom(netip.MustParseAddr(s))
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustEncode(t testing.TB, r *Report) []byte {
	t.Helper()
	b, err := Encode(r)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	return b
}

// sameReport fails the test if got and want differ; times compare as instants.
func sameReport(t *testing.T, got, want *Report) {
	t.Helper()
	if got.Node != want.Node || got.BootID != want.BootID || got.Sequence != want.Sequence {
		t.Errorf("identity = (%q, %x, %d), want (%q, %x, %d)",
			got.Node, got.BootID, got.Sequence, want.Node, want.BootID, want.Sequence)
	}
	if !got.WindowStart.Equal(want.WindowStart) || !got.WindowEnd.Equal(want.WindowEnd) {
		t.Errorf("window = [%v, %v], want [%v, %v]", got.WindowStart, got.WindowEnd, want.WindowStart, want.WindowEnd)
	}
	if len(got.Flows) != len(want.Flows) {
		t.Fatalf("got %d flows, want %d", len(got.Flows), len(want.Flows))
	}
	for i := range want.Flows {
		if got.Flows[i] != want.Flows[i] {
			t.Errorf("flow %d = %+v, want %+v", i, got.Flows[i], want.Flows[i])
		}
	}
}

func TestAddr(t *testing.T) {
	tests := []struct {
		in       string
		wantHex  string
		wantText string
	}{
		{"198.18.0.1", "00000000000000000000ffffc6120001", "198.18.0.1"},
		{"0.0.0.0", "00000000000000000000ffff00000000", "0.0.0.0"},
		{"fd00::2", "fd000000000000000000000000000002", "fd00::2"},
		{"::", "00000000000000000000000000000000", "::"},
		// A mapped address is the same Addr as the IPv4 one, so it comes back
		// as IPv4: the wire format cannot tell them apart, like BPF map keys.
		{"::ffff:198.18.0.1", "00000000000000000000ffffc6120001", "198.18.0.1"},
		{"fe80::1%eth0", "fe800000000000000000000000000001", "fe80::1"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			a := addr(tt.in)
			if got := hex.EncodeToString(a[:]); got != tt.wantHex {
				t.Errorf("AddrFrom(%s) = %s, want %s", tt.in, got, tt.wantHex)
			}
			if got := a.String(); got != tt.wantText {
				t.Errorf("String() = %s, want %s", got, tt.wantText)
			}
			if got := a.Netip(); got != netip.MustParseAddr(tt.wantText) {
				t.Errorf("Netip() = %v, want %s", got, tt.wantText)
			}
		})
	}
}

func TestEncodeGolden(t *testing.T) {
	want := mustHex(t, goldenHex)
	got := mustEncode(t, goldenReport())
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode =\n%x\nwant\n%x", got, want)
	}
	// AppendEncode appends after what is in dst.
	got, err := AppendEncode([]byte("prefix"), goldenReport())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendEncode = %x, want prefix then %x", got, want)
	}
	dec, err := Decode(want, Limits{})
	if err != nil {
		t.Fatalf("Decode golden: %v", err)
	}
	sameReport(t, dec, goldenReport())
}

func TestRoundTrip(t *testing.T) {
	long := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	if len(long) != MaxNodeNameLen {
		t.Fatalf("long name has %d bytes", len(long))
	}
	base := func() *Report {
		r := goldenReport()
		r.Flows = nil
		return r
	}
	tests := []struct {
		name   string
		mutate func(r *Report)
	}{
		{"zero flows", func(r *Report) {}},
		{"empty but non-nil flows", func(r *Report) { r.Flows = []Flow{} }},
		{"ipv4", func(r *Report) {
			r.Flows = []Flow{
				{addr("198.18.0.1"), addr("198.19.255.254"), 1500, 1},
				{addr("198.19.255.254"), addr("198.18.0.1"), 64, 1},
			}
		}},
		{"ipv6", func(r *Report) {
			r.Flows = []Flow{
				{addr("fd00::1"), addr("fd00:ffff::2"), 1 << 40, 1 << 30},
				{addr("fd00:ffff::2"), addr("fd00::1"), 0, 0},
			}
		}},
		{"mixed", func(r *Report) {
			r.Flows = []Flow{
				{addr("198.18.0.1"), addr("fd00::1"), 127, 127},
				{addr("fd00::1"), addr("198.18.0.1"), 128, 128},
				{addr("198.18.0.2"), addr("198.18.0.3"), 16383, 16384},
			}
		}},
		{"bytes without packets are carried as sent", func(r *Report) {
			r.Flows = []Flow{{addr("198.18.0.1"), addr("198.18.0.2"), 100, 0}}
		}},
		{"max values", func(r *Report) {
			r.Node = long
			r.BootID = [16]byte{0: 0xff, 15: 0xff}
			r.Sequence = math.MaxUint64
			r.WindowStart = time.Unix(0, 1)
			r.WindowEnd = time.Unix(0, math.MaxInt64)
			r.Flows = []Flow{{addr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), addr("255.255.255.255"), math.MaxUint64, math.MaxUint64}}
		}},
		{"empty window", func(r *Report) { r.WindowEnd = r.WindowStart }},
		{"local times", func(r *Report) {
			loc := time.FixedZone("X", 5*3600)
			r.WindowStart = time.Date(2026, 11, 23, 12, 0, 0, 1, loc)
			r.WindowEnd = time.Date(2026, 11, 23, 12, 0, 10, 0, loc)
		}},
		{"monotonic clock reading", func(r *Report) {
			now := time.Now()
			r.WindowStart, r.WindowEnd = now, now.Add(10*time.Second)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.mutate(r)
			enc := mustEncode(t, r)
			if n := encodedLen(r); n != len(enc) {
				t.Errorf("encodedLen = %d, encoding has %d bytes", n, len(enc))
			}
			got, err := Decode(enc, Limits{})
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			sameReport(t, got, r)
			if got.WindowStart.Location() != time.UTC || got.WindowEnd.Location() != time.UTC {
				t.Errorf("decoded times are in %v and %v, want UTC", got.WindowStart.Location(), got.WindowEnd.Location())
			}
			again := mustEncode(t, got)
			if !bytes.Equal(again, enc) {
				t.Errorf("re-encoding differs:\n%x\n%x", again, enc)
			}
		})
	}
}

func TestEncodeRefusesInvalid(t *testing.T) {
	tests := []struct {
		name      string
		mutate    func(r *Report)
		wantField string
	}{
		{"empty node", func(r *Report) { r.Node = "" }, "node name"},
		{"upper case node", func(r *Report) { r.Node = "Node1" }, "node name"},
		{"node too long", func(r *Report) { r.Node = strings.Repeat("a", 254) }, "node name"},
		{"zero boot id", func(r *Report) { r.BootID = [16]byte{} }, "boot id"},
		{"zero start", func(r *Report) { r.WindowStart = time.Unix(0, 0) }, "window"},
		{"start before epoch", func(r *Report) { r.WindowStart = time.Unix(-1, 0) }, "window"},
		{"end before start", func(r *Report) { r.WindowEnd = r.WindowStart.Add(-1) }, "window"},
		{"zero time", func(r *Report) { r.WindowStart = time.Time{} }, "window start"},
		{"end after 2262", func(r *Report) { r.WindowEnd = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) }, "window end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goldenReport()
			tt.mutate(r)
			dst := []byte("keep")
			got, err := AppendEncode(dst, r)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("AppendEncode error = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), "encoding "+tt.wantField+":") {
				t.Errorf("error %q does not name field %q", err, tt.wantField)
			}
			if string(got) != "keep" {
				t.Errorf("AppendEncode changed dst to %q on error", got)
			}
			var buf bytes.Buffer
			if err := WriteGzip(&buf, r); !errors.Is(err, ErrInvalid) || buf.Len() != 0 {
				t.Errorf("WriteGzip = %v after writing %d bytes, want ErrInvalid and nothing written", err, buf.Len())
			}
		})
	}
}

func TestCheckNodeName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"0", true},
		{"node-1", true},
		{"ip-10-0-1-2.eu-west-1.compute.internal", true},
		{"a--b", true},
		{"1.2.3.4", true},
		{strings.Repeat("a", 253), true},
		{"", false},
		{strings.Repeat("a", 254), false},
		{"Node", false},
		{"node_1", false},
		{"node 1", false},
		{"-node", false},
		{"node-", false},
		{".node", false},
		{"node.", false},
		{"a..b", false},
		{"a.-b", false},
		{"a-.b", false},
		{"nöde", false},
		{"a\x00", false},
	}
	for _, tt := range tests {
		msg := checkNodeName(tt.name)
		if (msg == "") != tt.ok {
			t.Errorf("checkNodeName(%q) = %q, want ok=%v", tt.name, msg, tt.ok)
		}
	}
}

func TestUvarint(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  uint64
		wantN int
	}{
		{"zero", "00", 0, 1},
		{"one byte max", "7f", 127, 1},
		{"two bytes min", "8001", 128, 2},
		{"300", "ac02", 300, 2},
		{"followed by more", "7fff", 127, 1},
		{"max uint64", "ffffffffffffffffff01", math.MaxUint64, 10},
		{"bit 63 only", "80808080808080808001", 1 << 63, 10},
		{"empty", "", 0, varintTruncated},
		{"cut after continuation", "80", 0, varintTruncated},
		{"cut after nine bytes", "ffffffffffffffffff", 0, varintTruncated},
		{"overlong zero", "8000", 0, varintOverlong},
		{"overlong one", "8100", 0, varintOverlong},
		{"overlong ten bytes", "ff8080808080808080" + "00", 0, varintOverlong},
		{"tenth byte over bit 63", "ffffffffffffffffff02", 0, varintOverflow},
		{"eleven bytes", "ffffffffffffffffff8001", 0, varintOverflow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := uvarint(mustHex(t, tt.in))
			if got != tt.want || n != tt.wantN {
				t.Errorf("uvarint(%s) = %d, %d; want %d, %d", tt.in, got, n, tt.want, tt.wantN)
			}
		})
	}
	// Whatever the standard encoder writes, the strict reader takes back,
	// and uvarintLen predicts its length.
	for shift := 0; shift < 64; shift++ {
		for _, v := range []uint64{1<<shift - 1, 1 << shift, 1<<shift + 1} {
			enc := binary.AppendUvarint(nil, v)
			got, n := uvarint(enc)
			if got != v || n != len(enc) {
				t.Errorf("uvarint(AppendUvarint(%d)) = %d, %d; want %d, %d", v, got, n, v, len(enc))
			}
			if l := uvarintLen(v); l != len(enc) {
				t.Errorf("uvarintLen(%d) = %d, want %d", v, l, len(enc))
			}
		}
	}
}

func TestMaxEncodedLen(t *testing.T) {
	lim := Limits{MaxFlows: 3}
	r := &Report{
		Node:        strings.Repeat("a", MaxNodeNameLen),
		BootID:      [16]byte{1},
		Sequence:    math.MaxUint64,
		WindowStart: time.Unix(0, 1),
		WindowEnd:   time.Unix(0, math.MaxInt64),
		Flows:       slices.Repeat([]Flow{{Bytes: math.MaxUint64, Packets: math.MaxUint64}}, 3),
	}
	enc := mustEncode(t, r)
	if int64(len(enc)) > lim.MaxEncodedLen() {
		t.Errorf("largest report with %d flows has %d bytes, MaxEncodedLen says %d", lim.MaxFlows, len(enc), lim.MaxEncodedLen())
	}
	if _, err := Decode(enc, lim); err != nil {
		t.Errorf("Decode at the limit: %v", err)
	}
	if got, want := (Limits{}).MaxEncodedLen(), (Limits{MaxFlows: DefaultMaxFlows}).MaxEncodedLen(); got != want {
		t.Errorf("zero Limits MaxEncodedLen = %d, want the default's %d", got, want)
	}
}
