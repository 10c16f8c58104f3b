package report

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"
)

// Decode decodes one report from data, which must hold exactly one report
// and nothing after it. Errors are *DecodeError values; see DecodeInto.
func Decode(data []byte, lim Limits) (*Report, error) {
	r := new(Report)
	if err := DecodeInto(r, data, lim); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeInto decodes one report from data into r, reusing the capacity of
// r.Flows so that a server decoding report after report into the same Report
// allocates nothing per flow. Nothing in r refers to data afterwards.
//
// Errors are *DecodeError values naming the field and its offset, and wrap
// ErrTruncated, ErrUnsupportedVersion, ErrTooManyFlows, ErrTrailingData or
// ErrInvalid. On error r holds unspecified values, but r.Flows keeps its
// capacity for the next call.
//
// The flow count is checked against lim and against what the remaining bytes
// can hold before r.Flows is grown, so a short hostile input cannot make it
// allocate more than the input could fill.
func DecodeInto(r *Report, data []byte, lim Limits) error {
	d := decoder{data: data}

	if err := d.magic(); err != nil {
		return err
	}
	b, err := d.fixed(1, "version")
	if err != nil {
		return err
	}
	if b[0] != Version {
		return d.fail(d.off-1, "version", ErrUnsupportedVersion,
			fmt.Sprintf("got %d, this decoder supports %d", b[0], Version))
	}
	b, err = d.fixed(1, "flags")
	if err != nil {
		return err
	}
	if b[0] != 0 {
		return d.fail(d.off-1, "flags", ErrInvalid,
			fmt.Sprintf("got 0x%02x, version %d requires 0 (no flags defined)", b[0], Version))
	}

	nameAt := d.off
	nameLen, err := d.uvarint("node name length")
	if err != nil {
		return err
	}
	if nameLen == 0 || nameLen > MaxNodeNameLen {
		return d.fail(nameAt, "node name length", ErrInvalid,
			fmt.Sprintf("got %d, want 1 to %d", nameLen, MaxNodeNameLen))
	}
	name, err := d.fixed(int(nameLen), "node name")
	if err != nil {
		return err
	}
	if msg := checkNodeName(name); msg != "" {
		return d.fail(d.off-len(name), "node name", ErrInvalid, fmt.Sprintf("%q: %s", name, msg))
	}
	// Comparing before converting costs no allocation, and a server reusing r
	// often sees the same node again.
	if r.Node != string(name) {
		r.Node = string(name)
	}

	b, err = d.fixed(bootIDLen, "boot id")
	if err != nil {
		return err
	}
	r.BootID = [16]byte(b)
	if isZero(r.BootID) {
		return d.fail(d.off-bootIDLen, "boot id", ErrInvalid, "all zeros")
	}

	b, err = d.fixed(8, "sequence")
	if err != nil {
		return err
	}
	r.Sequence = binary.BigEndian.Uint64(b)

	b, err = d.fixed(8, "window start")
	if err != nil {
		return err
	}
	start := int64(binary.BigEndian.Uint64(b))
	if start <= 0 {
		return d.fail(d.off-8, "window start", ErrInvalid, checkWindow(start, start))
	}
	b, err = d.fixed(8, "window end")
	if err != nil {
		return err
	}
	end := int64(binary.BigEndian.Uint64(b))
	if msg := checkWindow(start, end); msg != "" {
		return d.fail(d.off-8, "window end", ErrInvalid, msg)
	}
	r.WindowStart = time.Unix(0, start).UTC()
	r.WindowEnd = time.Unix(0, end).UTC()

	countAt := d.off
	count, err := d.uvarint("flow count")
	if err != nil {
		return err
	}
	if maxFlows := lim.maxFlows(); count > uint64(maxFlows) {
		return d.fail(countAt, "flow count", ErrTooManyFlows,
			fmt.Sprintf("count %d exceeds limit %d", count, maxFlows))
	}
	if rest := len(d.data) - d.off; count > uint64(rest/minFlowLen) {
		return d.fail(countAt, "flow count", ErrTruncated,
			fmt.Sprintf("%d flows need at least %d bytes each, have %d bytes", count, minFlowLen, rest))
	}
	n := int(count)
	r.Flows = slices.Grow(r.Flows[:0], n)[:n]
	if err := d.flows(r.Flows); err != nil {
		return err
	}

	if rest := len(d.data) - d.off; rest != 0 {
		return d.fail(d.off, "end of report", ErrTrailingData,
			fmt.Sprintf("%d bytes after the last flow", rest))
	}
	return nil
}

// decoder reads fields from data in order; off is where the next one starts.
type decoder struct {
	data []byte
	off  int
}

func (d *decoder) fail(off int, field string, err error, detail string) error {
	return &DecodeError{Offset: off, Field: field, Err: err, Detail: detail}
}

func (d *decoder) magic() error {
	n := min(len(d.data), len(magic))
	if string(d.data[:n]) != magic[:n] {
		return d.fail(0, "magic", ErrInvalid, fmt.Sprintf("got %q, want %q", d.data[:n], magic))
	}
	if n < len(magic) {
		return d.truncated("magic", len(magic))
	}
	d.off = n
	return nil
}

// fixed returns the next n bytes.
func (d *decoder) fixed(n int, field string) ([]byte, error) {
	if len(d.data)-d.off < n {
		return nil, d.truncated(field, n)
	}
	b := d.data[d.off : d.off+n]
	d.off += n
	return b, nil
}

func (d *decoder) truncated(field string, need int) error {
	return d.fail(d.off, field, ErrTruncated,
		fmt.Sprintf("need %d bytes, have %d", need, len(d.data)-d.off))
}

// uvarint reads the next canonical uvarint.
func (d *decoder) uvarint(field string) (uint64, error) {
	v, n := uvarint(d.data[d.off:])
	if n <= 0 {
		return 0, d.uvarintError(field, n)
	}
	d.off += n
	return v, nil
}

func (d *decoder) uvarintError(field string, n int) error {
	switch n {
	case varintTruncated:
		return d.fail(d.off, field, ErrTruncated,
			fmt.Sprintf("varint needs more than the %d bytes left", len(d.data)-d.off))
	case varintOverlong:
		return d.fail(d.off, field, ErrInvalid, "non-canonical varint (ends in a zero byte)")
	default:
		return d.fail(d.off, field, ErrInvalid, "varint overflows 64 bits")
	}
}

// flows decodes len(fs) flows into fs. It is the hot path of a server: the
// common one-byte varints are read inline, and the field names of errors are
// only built once something failed.
func (d *decoder) flows(fs []Flow) error {
	data, off := d.data, d.off
	for i := range fs {
		f := &fs[i]
		if len(data)-off < 2*addrLen {
			d.off = off
			if len(data)-off < addrLen {
				return d.truncated(flowField(i, "src"), addrLen)
			}
			d.off += addrLen
			return d.truncated(flowField(i, "dst"), addrLen)
		}
		f.Src = Addr(data[off : off+addrLen])
		f.Dst = Addr(data[off+addrLen : off+2*addrLen])
		off += 2 * addrLen

		if off < len(data) && data[off] < 0x80 {
			f.Bytes = uint64(data[off])
			off++
		} else {
			v, n := uvarint(data[off:])
			if n <= 0 {
				d.off = off
				return d.uvarintError(flowField(i, "bytes"), n)
			}
			f.Bytes = v
			off += n
		}

		if off < len(data) && data[off] < 0x80 {
			f.Packets = uint64(data[off])
			off++
		} else {
			v, n := uvarint(data[off:])
			if n <= 0 {
				d.off = off
				return d.uvarintError(flowField(i, "packets"), n)
			}
			f.Packets = v
			off += n
		}
	}
	d.off = off
	return nil
}

func flowField(i int, part string) string {
	return "flow " + strconv.Itoa(i) + " " + part
}

// Results of uvarint that are not lengths.
const (
	varintTruncated = 0
	varintOverlong  = -1
	varintOverflow  = -2
)

// uvarint decodes the canonical uvarint at the start of b and returns it and
// its length, or a length <= 0: varintTruncated, varintOverlong or
// varintOverflow. Unlike binary.Uvarint it refuses overlong forms (a last
// byte of zero after the first), so every value has exactly one encoding.
func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < maxVarintLen; i++ {
		c := b[i]
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, varintOverlong
			}
			// The tenth byte holds only bit 63.
			if i == maxVarintLen-1 && c > 1 {
				return 0, varintOverflow
			}
			return v | uint64(c)<<(7*i), i + 1
		}
		v |= uint64(c&0x7f) << (7 * i)
	}
	if len(b) >= maxVarintLen {
		return 0, varintOverflow
	}
	return 0, varintTruncated
}
