package report

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzLimits keep fuzzing inputs small enough to find the limit check.
var fuzzLimits = Limits{MaxFlows: 64}

func FuzzDecode(f *testing.F) {
	f.Add(mustHex(f, goldenHex))
	f.Add(mustEncode(f, validReport()))
	empty := goldenReport()
	empty.Flows = nil
	f.Add(mustEncode(f, empty))
	f.Add([]byte{})
	f.Add([]byte(magic))
	f.Add(splice(f, mustHex(f, goldenHex), offCount, offSrc, "8100"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data, fuzzLimits)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v (%T) is not a *DecodeError", err, err)
			}
			if de.Offset < 0 || de.Offset > len(data) {
				t.Fatalf("error offset %d outside the %d-byte input: %v", de.Offset, len(data), err)
			}
			for _, s := range []error{ErrTruncated, ErrUnsupportedVersion, ErrTooManyFlows, ErrTrailingData, ErrInvalid} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if len(r.Flows) > fuzzLimits.MaxFlows {
			t.Fatalf("decoded %d flows with a limit of %d", len(r.Flows), fuzzLimits.MaxFlows)
		}
		again, err := Encode(r)
		if err != nil {
			t.Fatalf("a decoded report does not encode: %v", err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("re-encoding differs from the input:\n in %x\nout %x", data, again)
		}
	})
}

// FuzzRoundTrip builds reports from fuzz input: whatever Encode accepts must
// decode to the same report, and whatever it refuses must be ErrInvalid.
func FuzzRoundTrip(f *testing.F) {
	f.Add("n1", []byte{1}, uint64(7), int64(1e9), int64(1e9), []byte{})
	f.Add("node-a.zone", []byte{0xff}, uint64(1<<63), int64(1), int64(1<<62), bytes.Repeat([]byte{0xff, 0x01}, 60))
	f.Add("Bad_Name", []byte{}, uint64(0), int64(-5), int64(0), []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, node string, boot []byte, seq uint64, start, end int64, flowBytes []byte) {
		r := &Report{
			Node:        node,
			Sequence:    seq,
			WindowStart: time.Unix(0, start),
			WindowEnd:   time.Unix(0, end),
		}
		copy(r.BootID[:], boot)
		// Each 16 bytes of input make a flow: the address bytes are spread
		// over Src and Dst, the counts are read from them.
		for len(flowBytes) >= 16 {
			chunk := flowBytes[:16]
			flowBytes = flowBytes[16:]
			var fl Flow
			copy(fl.Src[:], chunk)
			copy(fl.Dst[8:], chunk)
			fl.Bytes = binary.LittleEndian.Uint64(chunk[:8])
			fl.Packets = binary.LittleEndian.Uint64(chunk[8:]) >> (chunk[0] % 64)
			r.Flows = append(r.Flows, fl)
		}
		enc, err := Encode(r)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode error %v is not ErrInvalid", err)
			}
			return
		}
		got, err := Decode(enc, Limits{})
		if err != nil {
			t.Fatalf("Decode of an encoded report: %v", err)
		}
		sameReport(t, got, r)
	})
}

// TestSeedCorpus checks that the committed seeds are what their names say,
// so the fuzzer starts from valid reports and near misses: files named
// valid-* decode, files named bad-<sentinel>-* fail with that sentinel.
// Files the fuzzer itself added (hash names) are crashers kept as
// regression cases and run by FuzzDecode itself.
func TestSeedCorpus(t *testing.T) {
	sentinels := map[string]error{
		"truncated": ErrTruncated,
		"version":   ErrUnsupportedVersion,
		"toomany":   ErrTooManyFlows,
		"trailing":  ErrTrailingData,
		"invalid":   ErrInvalid,
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var valid, bad int
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "valid-") && !strings.HasPrefix(name, "bad-") {
			continue
		}
		data := readCorpusFile(t, filepath.Join(dir, name))
		_, err := Decode(data, fuzzLimits)
		if strings.HasPrefix(name, "valid-") {
			valid++
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		bad++
		kind, _, _ := strings.Cut(strings.TrimPrefix(name, "bad-"), "-")
		want, ok := sentinels[kind]
		if !ok {
			t.Errorf("%s: unknown kind %q in the name", name, kind)
			continue
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: error = %v, want %v", name, err, want)
		}
	}
	if valid < 3 || bad < 5 {
		t.Errorf("seed corpus has %d valid and %d bad reports, want at least 3 and 5", valid, bad)
	}
}

// readCorpusFile reads a corpus file of one []byte value, in the
// "go test fuzz v1" format.
func readCorpusFile(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header, value, ok := strings.Cut(strings.TrimSpace(string(raw)), "\n")
	if !ok || header != "go test fuzz v1" || !strings.HasPrefix(value, "[]byte(") || !strings.HasSuffix(value, ")") {
		t.Fatalf("%s: not a one-value go test fuzz v1 file", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(value, "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
