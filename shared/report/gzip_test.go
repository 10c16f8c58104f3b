package report

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func gzipped(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGzipRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    *Report
	}{
		{"golden", goldenReport()},
		{"mixed", validReport()},
		{"many flows", func() *Report {
			r := validReport()
			r.Flows = slices.Repeat(r.Flows, 1000)
			return r
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteGzip(&buf, tt.r); err != nil {
				t.Fatalf("WriteGzip: %v", err)
			}
			// Any gzip reader can read it: it is a plain gzip stream of the
			// binary encoding.
			zr, err := gzip.NewReader(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustEncode(t, tt.r); !bytes.Equal(plain, want) {
				t.Errorf("gzip stream holds %d bytes that are not the encoding (%d bytes)", len(plain), len(want))
			}

			for _, max := range []int64{0, int64(len(plain))} {
				got, err := ReadGzip(bytes.NewReader(buf.Bytes()), max, Limits{})
				if err != nil {
					t.Fatalf("ReadGzip(max %d): %v", max, err)
				}
				sameReport(t, got, tt.r)
			}
			// One byte below the decompressed size is too large.
			_, err = ReadGzip(bytes.NewReader(buf.Bytes()), int64(len(plain)-1), Limits{})
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("ReadGzip(max %d) of %d bytes: error = %v, want ErrTooLarge", len(plain)-1, len(plain), err)
			}
		})
	}
}

func TestAppendGunzipReusesBuffer(t *testing.T) {
	plain := mustEncode(t, validReport())
	z := gzipped(t, plain)
	buf := make([]byte, 0, 4096)
	got, err := AppendGunzip(buf, bytes.NewReader(z), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Fatalf("AppendGunzip = %x, want %x", got, plain)
	}
	if &got[:1][0] != &buf[:1][0] {
		t.Error("AppendGunzip did not use the capacity of dst")
	}
	got, err = AppendGunzip([]byte("keep"), bytes.NewReader(z), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, append([]byte("keep"), plain...)) {
		t.Errorf("AppendGunzip did not append after the existing bytes")
	}
}

func TestReadGzipMalformed(t *testing.T) {
	valid := gzipped(t, mustEncode(t, validReport()))
	corrupt := slices.Clone(valid)
	corrupt[len(corrupt)/2] ^= 0xff
	badChecksum := slices.Clone(valid)
	badChecksum[len(badChecksum)-5] ^= 0xff // last 8 bytes: CRC-32, size
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"empty", nil, ErrTruncated},
		{"not gzip", mustEncode(t, validReport()), ErrInvalid},
		{"cut off", valid[:len(valid)-10], ErrTruncated},
		{"corrupt", corrupt, ErrInvalid},
		{"bad checksum", badChecksum, ErrInvalid},
		{"gzip of garbage", gzipped(t, []byte("hello")), ErrInvalid},
		{"gzip of a cut-off report", gzipped(t, mustEncode(t, validReport())[:60]), ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ReadGzip(bytes.NewReader(tt.in), 0, Limits{})
			if !errors.Is(err, tt.wantErr) || r != nil {
				t.Fatalf("ReadGzip = %v, %v; want nil, %v", r, err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "report: ") {
				t.Errorf("message %q does not say it is about a report", err)
			}
		})
	}
}

// countingReader counts the compressed bytes a decompressor takes.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func TestReadGzipBomb(t *testing.T) {
	const bombSize = 100 << 20 // 100 MiB of zeros
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 1<<20)
	for range bombSize / len(zeros) {
		if _, err := zw.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	bomb := buf.Bytes()
	t.Logf("bomb: %d bytes compressed, %d decompressed", len(bomb), bombSize)

	const max = 1 << 20
	in := &countingReader{r: bytes.NewReader(bomb)}
	var r *Report
	allocated := allocatedBytes(func() { r, err = ReadGzip(in, max, Limits{}) })
	if !errors.Is(err, ErrTooLarge) || r != nil {
		t.Fatalf("ReadGzip = %v, %v; want nil, ErrTooLarge", r, err)
	}
	if in.n >= int64(len(bomb)) {
		t.Errorf("ReadGzip read all %d compressed bytes; it should stop after %d decompressed bytes", in.n, max)
	}
	// The buffer is bounded by max; the decompressor's state adds some
	// tens of kilobytes.
	if allocated > 4*max {
		t.Errorf("ReadGzip allocated %d bytes with a limit of %d", allocated, max)
	}

	// The default limit of a zero max is MaxEncodedLen of the limits.
	lim := Limits{MaxFlows: 1000}
	_, err = ReadGzip(bytes.NewReader(bomb), 0, lim)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadGzip with the default max: error = %v, want ErrTooLarge", err)
	}
}
