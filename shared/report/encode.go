package report

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"time"
)

// Encode returns the encoding of r. See AppendEncode.
func Encode(r *Report) ([]byte, error) {
	return AppendEncode(nil, r)
}

// AppendEncode appends the encoding of r to dst and returns the extended
// buffer. It refuses, with an error wrapping ErrInvalid, a report the decoder
// would refuse: bad node name, zero boot id, window out of order or not
// representable as int64 Unix nanoseconds. Limits are not applied: an agent
// that must stay under a server's MaxFlows splits its reports itself. On
// error dst is returned unchanged.
func AppendEncode(dst []byte, r *Report) ([]byte, error) {
	start, end, err := checkReport(r)
	if err != nil {
		return dst, err
	}
	// Sizing exactly costs one cheap pass over the flows and saves the copies
	// of append growing a multi-megabyte buffer step by step.
	dst = slices.Grow(dst, encodedLen(r))
	dst = append(dst, magic...)
	dst = append(dst, Version, 0)
	dst = binary.AppendUvarint(dst, uint64(len(r.Node)))
	dst = append(dst, r.Node...)
	dst = append(dst, r.BootID[:]...)
	dst = binary.BigEndian.AppendUint64(dst, r.Sequence)
	dst = binary.BigEndian.AppendUint64(dst, uint64(start))
	dst = binary.BigEndian.AppendUint64(dst, uint64(end))
	dst = binary.AppendUvarint(dst, uint64(len(r.Flows)))
	for i := range r.Flows {
		f := &r.Flows[i]
		dst = append(dst, f.Src[:]...)
		dst = append(dst, f.Dst[:]...)
		dst = binary.AppendUvarint(dst, f.Bytes)
		dst = binary.AppendUvarint(dst, f.Packets)
	}
	return dst, nil
}

// checkReport validates r for encoding and returns its window in Unix
// nanoseconds.
func checkReport(r *Report) (start, end int64, err error) {
	if msg := checkNodeName(r.Node); msg != "" {
		if len(r.Node) <= MaxNodeNameLen {
			msg = fmt.Sprintf("%q: %s", r.Node, msg)
		}
		return 0, 0, encodeError("node name", msg)
	}
	if isZero(r.BootID) {
		return 0, 0, encodeError("boot id", "all zeros")
	}
	start, ok := unixNano(r.WindowStart)
	if !ok {
		return 0, 0, encodeError("window start", fmt.Sprintf("%v is not representable as int64 Unix nanoseconds", r.WindowStart))
	}
	end, ok = unixNano(r.WindowEnd)
	if !ok {
		return 0, 0, encodeError("window end", fmt.Sprintf("%v is not representable as int64 Unix nanoseconds", r.WindowEnd))
	}
	if msg := checkWindow(start, end); msg != "" {
		return 0, 0, encodeError("window", msg)
	}
	return start, end, nil
}

func encodeError(field, detail string) error {
	return fmt.Errorf("report: encoding %s: %w: %s", field, ErrInvalid, detail)
}

// unixNano is t.UnixNano, reporting whether t fits: UnixNano's result is
// undefined outside roughly the years 1678 to 2262, including the zero Time.
func unixNano(t time.Time) (int64, bool) {
	n := t.UnixNano()
	return n, time.Unix(0, n).Equal(t)
}

// encodedLen is the exact length of r's encoding.
func encodedLen(r *Report) int {
	n := headerFixedLen + uvarintLen(uint64(len(r.Node))) + len(r.Node) +
		bootIDLen + 8 + 8 + 8 + uvarintLen(uint64(len(r.Flows)))
	for i := range r.Flows {
		n += 2*addrLen + uvarintLen(r.Flows[i].Bytes) + uvarintLen(r.Flows[i].Packets)
	}
	return n
}

// uvarintLen is the length of the canonical uvarint encoding of v.
func uvarintLen(v uint64) int {
	// Seven bits per byte, and one byte even for zero.
	return (bits.Len64(v|1) + 6) / 7
}
