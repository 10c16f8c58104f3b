package report

import (
	"errors"
	"fmt"
)

// Sentinel errors, for callers to branch on with errors.Is. Decode errors are
// *DecodeError values wrapping one of them.
var (
	// ErrTruncated means the input ended before the report did.
	ErrTruncated = errors.New("truncated")
	// ErrUnsupportedVersion means the version byte names a format this
	// package does not know.
	ErrUnsupportedVersion = errors.New("unsupported version")
	// ErrTooManyFlows means the flow count is over Limits.MaxFlows.
	ErrTooManyFlows = errors.New("too many flows")
	// ErrTrailingData means bytes follow the last flow.
	ErrTrailingData = errors.New("trailing data")
	// ErrInvalid means a field breaks the format: bad magic, reserved flags
	// set, bad node name, zero boot id, window out of order, non-canonical
	// varint, corrupt gzip stream.
	ErrInvalid = errors.New("invalid")
	// ErrTooLarge means a compressed report decompresses to more than the
	// allowed size.
	ErrTooLarge = errors.New("too large")
)

// DecodeError says where decoding failed and why.
type DecodeError struct {
	// Offset is the byte offset of the field that failed, from the start of
	// the (decompressed) report.
	Offset int
	// Field names the field, e.g. "node name" or "flow 17 dst"; flows count
	// from 0.
	Field string
	// Err is one of the sentinel errors.
	Err error
	// Detail says what exactly was wrong, e.g. "need 16 bytes, have 3".
	Detail string
}

func (e *DecodeError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("report: %s at byte %d: %v", e.Field, e.Offset, e.Err)
	}
	return fmt.Sprintf("report: %s at byte %d: %v: %s", e.Field, e.Offset, e.Err, e.Detail)
}

func (e *DecodeError) Unwrap() error { return e.Err }
