package report

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// Offsets of the fields of the golden report (see report_test.go).
const (
	offVersion  = 4
	offFlags    = 5
	offNameLen  = 6
	offName     = 7
	offBootID   = 9
	offSequence = 25
	offStart    = 33
	offEnd      = 41
	offCount    = 49
	offSrc      = 50
	offDst      = 66
	offBytes    = 82
	offPackets  = 84
	goldenLen   = 85
)

// splice returns b with b[from:to] replaced by the hex bytes repl.
func splice(t testing.TB, b []byte, from, to int, repl string) []byte {
	t.Helper()
	return slices.Concat(b[:from], mustHex(t, repl), b[to:])
}

// checkDecodeError fails unless err is a *DecodeError wrapping want at field
// and offset, with a message that says both.
func checkDecodeError(t *testing.T, err, want error, field string, offset int) *DecodeError {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
	}
	if de.Field != field || de.Offset != offset {
		t.Errorf("error at %q byte %d, want %q byte %d (%v)", de.Field, de.Offset, field, offset, err)
	}
	if msg, wantPrefix := err.Error(), fmt.Sprintf("report: %s at byte %d: %v", field, offset, want); !strings.HasPrefix(msg, wantPrefix) {
		t.Errorf("message %q does not start with %q", msg, wantPrefix)
	}
	return de
}

func TestDecodeMalformed(t *testing.T) {
	tests := []struct {
		name       string
		input      func(t testing.TB, golden []byte) []byte
		lim        Limits
		wantErr    error
		wantField  string
		wantOffset int
		wantDetail string // a part of the message, if set
	}{
		{
			name:    "wrong magic",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, 0, 4, "5a545251") },
			wantErr: ErrInvalid, wantField: "magic", wantOffset: 0, wantDetail: `got "ZTRQ", want "ZTRP"`,
		},
		{
			name:    "json body",
			input:   func(t testing.TB, g []byte) []byte { return []byte(`{"node":"n1"}`) },
			wantErr: ErrInvalid, wantField: "magic", wantOffset: 0,
		},
		{
			name:    "gzip body not decompressed",
			input:   func(t testing.TB, g []byte) []byte { return mustHex(t, "1f8b0800000000000000") },
			wantErr: ErrInvalid, wantField: "magic", wantOffset: 0,
		},
		{
			name:    "short non-magic",
			input:   func(t testing.TB, g []byte) []byte { return []byte("ZX") },
			wantErr: ErrInvalid, wantField: "magic", wantOffset: 0,
		},
		{
			name:    "version 2",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offVersion, offFlags, "02") },
			wantErr: ErrUnsupportedVersion, wantField: "version", wantOffset: offVersion,
			wantDetail: "got 2, this decoder supports 1",
		},
		{
			name:    "version 0",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offVersion, offFlags, "00") },
			wantErr: ErrUnsupportedVersion, wantField: "version", wantOffset: offVersion,
			wantDetail: "got 0",
		},
		{
			name:    "nonzero flags",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offFlags, offNameLen, "01") },
			wantErr: ErrInvalid, wantField: "flags", wantOffset: offFlags, wantDetail: "got 0x01",
		},
		{
			name:    "node name length zero",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offNameLen, offName, "00") },
			wantErr: ErrInvalid, wantField: "node name length", wantOffset: offNameLen,
		},
		{
			name:    "node name length 254",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offNameLen, offName, "fe01") },
			wantErr: ErrInvalid, wantField: "node name length", wantOffset: offNameLen, wantDetail: "got 254, want 1 to 253",
		},
		{
			name:    "node name length overlong varint",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offNameLen, offName, "8200") },
			wantErr: ErrInvalid, wantField: "node name length", wantOffset: offNameLen, wantDetail: "non-canonical",
		},
		{
			name:    "node name length beyond the data",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offNameLen, offName, "c801") }, // 200
			wantErr: ErrTruncated, wantField: "node name", wantOffset: offName + 1, wantDetail: "need 200 bytes, have 78",
		},
		{
			name:    "node name length swallowing the boot id",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offNameLen, offName, "03") },
			wantErr: ErrInvalid, wantField: "node name", wantOffset: offName, wantDetail: `"n1\x01"`,
		},
		{
			name:    "upper case node name",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offName, offBootID, "4e31") },
			wantErr: ErrInvalid, wantField: "node name", wantOffset: offName, wantDetail: `"N1"`,
		},
		{
			name:    "node name starting with a dash",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offName, offBootID, "2d31") },
			wantErr: ErrInvalid, wantField: "node name", wantOffset: offName,
		},
		{
			name:    "node name ending with a dot",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offName, offBootID, "612e") },
			wantErr: ErrInvalid, wantField: "node name", wantOffset: offName,
		},
		{
			name: "zero boot id",
			input: func(t testing.TB, g []byte) []byte {
				return splice(t, g, offBootID, offSequence, strings.Repeat("00", 16))
			},
			wantErr: ErrInvalid, wantField: "boot id", wantOffset: offBootID, wantDetail: "all zeros",
		},
		{
			name:    "window start zero",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offStart, offEnd, "0000000000000000") },
			wantErr: ErrInvalid, wantField: "window start", wantOffset: offStart,
		},
		{
			name:    "window start negative",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offStart, offEnd, "ffffffffffffffff") },
			wantErr: ErrInvalid, wantField: "window start", wantOffset: offStart, wantDetail: "start -1",
		},
		{
			name:    "window end before start",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offEnd, offCount, "000000003b9ac9ff") },
			wantErr: ErrInvalid, wantField: "window end", wantOffset: offEnd,
			wantDetail: "end 999999999 is before start 1000000000",
		},
		{
			name:    "flow count overlong varint",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offCount, offSrc, "8100") },
			wantErr: ErrInvalid, wantField: "flow count", wantOffset: offCount, wantDetail: "non-canonical",
		},
		{
			name: "flow count over 64 bits",
			input: func(t testing.TB, g []byte) []byte {
				return splice(t, g, offCount, offSrc, "ffffffffffffffffff7f")
			},
			wantErr: ErrInvalid, wantField: "flow count", wantOffset: offCount, wantDetail: "overflows 64 bits",
		},
		{
			name:    "more flows than the limit",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offCount, offSrc, "02") },
			lim:     Limits{MaxFlows: 1},
			wantErr: ErrTooManyFlows, wantField: "flow count", wantOffset: offCount, wantDetail: "count 2 exceeds limit 1",
		},
		{
			name:    "more flows than the default limit",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offCount, offSrc, "8080808004") }, // 2^30
			wantErr: ErrTooManyFlows, wantField: "flow count", wantOffset: offCount,
			wantDetail: fmt.Sprintf("count %d exceeds limit %d", 1<<30, DefaultMaxFlows),
		},
		{
			name:    "more flows than the remaining bytes can hold",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offCount, offSrc, "02") },
			wantErr: ErrTruncated, wantField: "flow count", wantOffset: offCount,
			wantDetail: "2 flows need at least 34 bytes each, have 35 bytes",
		},
		{
			name:    "fewer flows than sent",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offCount, offSrc, "00") },
			wantErr: ErrTrailingData, wantField: "end of report", wantOffset: offSrc,
			wantDetail: "35 bytes after the last flow",
		},
		{
			name:    "trailing byte",
			input:   func(t testing.TB, g []byte) []byte { return append(g, 0) },
			wantErr: ErrTrailingData, wantField: "end of report", wantOffset: goldenLen,
			wantDetail: "1 bytes after the last flow",
		},
		{
			name:    "second report appended",
			input:   func(t testing.TB, g []byte) []byte { return append(g, g...) },
			wantErr: ErrTrailingData, wantField: "end of report", wantOffset: goldenLen,
		},
		{
			name: "flow bytes over 64 bits",
			input: func(t testing.TB, g []byte) []byte {
				return splice(t, g, offBytes, offPackets, "ffffffffffffffffff02")
			},
			wantErr: ErrInvalid, wantField: "flow 0 bytes", wantOffset: offBytes, wantDetail: "overflows 64 bits",
		},
		{
			name:    "flow bytes overlong varint",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offBytes, offPackets, "ac8200") },
			wantErr: ErrInvalid, wantField: "flow 0 bytes", wantOffset: offBytes, wantDetail: "non-canonical",
		},
		{
			name:    "flow packets overlong varint",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offPackets, goldenLen, "8200") },
			wantErr: ErrInvalid, wantField: "flow 0 packets", wantOffset: offPackets, wantDetail: "non-canonical",
		},
		{
			name:    "flow packets varint cut off",
			input:   func(t testing.TB, g []byte) []byte { return splice(t, g, offPackets, goldenLen, "82") },
			wantErr: ErrTruncated, wantField: "flow 0 packets", wantOffset: offPackets,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			golden := mustHex(t, goldenHex)
			in := tt.input(t, slices.Clone(golden))
			r, err := Decode(in, tt.lim)
			if r != nil {
				t.Errorf("Decode returned a report with error %v", err)
			}
			checkDecodeError(t, err, tt.wantErr, tt.wantField, tt.wantOffset)
			if tt.wantDetail != "" && !strings.Contains(err.Error(), tt.wantDetail) {
				t.Errorf("message %q does not contain %q", err, tt.wantDetail)
			}
		})
	}
}

// TestDecodeErrorMessage pins the exact message a user sees for a report cut
// off in the middle of a flow.
func TestDecodeErrorMessage(t *testing.T) {
	r := goldenReport()
	r.Flows = slices.Repeat(r.Flows, 18)
	enc := mustEncode(t, r)
	// The golden flow takes 35 bytes: flow 17 starts at 50+17*35 = 645 and
	// its dst at 661; keep 3 bytes of it.
	_, err := Decode(enc[:664], Limits{})
	const want = "report: flow 17 dst at byte 661: truncated: need 16 bytes, have 3"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
}

// validReport has flows of every varint width and both address families, so
// that cutting its encoding anywhere lands in every kind of field.
func validReport() *Report {
	return &Report{
		Node:        "ip-198-18-0-1.zone-a.compute.example.internal", // over 32 bytes: no stack buffer for string(b)
		BootID:      [16]byte{0xde, 0xad, 0xbe, 0xef, 15: 1},
		Sequence:    1 << 40,
		WindowStart: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
		WindowEnd:   time.Date(2026, 11, 23, 12, 0, 10, 0, time.UTC),
		Flows: []Flow{
			{addr("198.18.0.1"), addr("198.18.1.1"), 64, 1},
			{addr("fd00::1"), addr("fd00::2"), 1 << 20, 1 << 10},
			{addr("198.18.0.1"), addr("fd00::3"), math.MaxUint64, math.MaxUint64},
			{addr("fd00::3"), addr("198.18.0.1"), 0, 0},
		},
	}
}

func TestDecodeTruncatedPrefixes(t *testing.T) {
	enc := mustEncode(t, validReport())
	for n := range len(enc) {
		_, err := Decode(enc[:n], Limits{})
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("prefix of %d/%d bytes: error = %v, want ErrTruncated", n, len(enc), err)
			continue
		}
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("prefix of %d bytes: error %v is not a *DecodeError", n, err)
			continue
		}
		if de.Offset > n || de.Field == "" {
			t.Errorf("prefix of %d bytes: error at %q byte %d, want a field at or before the cut", n, de.Field, de.Offset)
		}
		if want := fmt.Sprintf("at byte %d: truncated", de.Offset); !strings.Contains(err.Error(), want) {
			t.Errorf("prefix of %d bytes: message %q does not contain %q", n, err, want)
		}
	}
	if _, err := Decode(enc, Limits{}); err != nil {
		t.Fatalf("the whole encoding does not decode: %v", err)
	}
}

// allocatedBytes is how many bytes f allocates.
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestDecodeHostileCountAllocatesLittle sends a count at the limit in a tiny
// body: the decoder must refuse before making a slice for the claimed flows.
func TestDecodeHostileCountAllocatesLittle(t *testing.T) {
	golden := mustHex(t, goldenHex)
	in := splice(t, golden, offCount, offSrc, "8080808004") // 2^30 flows
	lim := Limits{MaxFlows: 1 << 30}
	var err error
	n := allocatedBytes(func() { _, err = Decode(in, lim) })
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("error = %v, want ErrTruncated", err)
	}
	// 2^30 flows would be 48 GiB; the report header and the error are a few
	// hundred bytes.
	if n > 64<<10 {
		t.Errorf("Decode allocated %d bytes for a %d-byte input", n, len(in))
	}
}

func TestDecodeIntoReuses(t *testing.T) {
	big := validReport()
	big.Flows = slices.Repeat(big.Flows, 2500) // 10,000 flows
	small := goldenReport()
	bigEnc, smallEnc := mustEncode(t, big), mustEncode(t, small)

	var r Report
	if err := DecodeInto(&r, bigEnc, Limits{}); err != nil {
		t.Fatal(err)
	}
	sameReport(t, &r, big)
	backing := &r.Flows[:1][0]

	if err := DecodeInto(&r, smallEnc, Limits{}); err != nil {
		t.Fatal(err)
	}
	sameReport(t, &r, small)
	if &r.Flows[:1][0] != backing {
		t.Error("DecodeInto of a smaller report did not reuse r.Flows")
	}

	// A failed decode leaves the capacity for the next one.
	if err := DecodeInto(&r, bigEnc[:len(bigEnc)-1], Limits{}); !errors.Is(err, ErrTruncated) {
		t.Fatalf("error = %v, want ErrTruncated", err)
	}
	if err := DecodeInto(&r, bigEnc, Limits{}); err != nil {
		t.Fatal(err)
	}
	sameReport(t, &r, big)
	if &r.Flows[:1][0] != backing {
		t.Error("DecodeInto after an error did not reuse r.Flows")
	}

	// Decoding the same node's reports again allocates nothing, however many
	// flows they carry.
	allocs := testing.AllocsPerRun(20, func() {
		if err := DecodeInto(&r, bigEnc, Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0 {
		t.Errorf("DecodeInto with a reused report: %v allocations per call, want 0", allocs)
	}
}

func TestDecodeDoesNotKeepInput(t *testing.T) {
	enc := mustEncode(t, validReport())
	r, err := Decode(enc, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	clear(enc)
	sameReport(t, r, validReport())
}
