package images

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkAssembleAndWrite measures what the image build adds to `go build`: the layer (tar + gzip),
// the digests and the OCI layout on disk, for a binary the size of a real service (the test binary
// itself stands in for it, or the binary named by ZONETOLL_IMAGES_BENCH_BINARY).
func BenchmarkAssembleAndWrite(b *testing.B) {
	path := os.Getenv("ZONETOLL_IMAGES_BENCH_BINARY")
	if path == "" {
		path = "/proc/self/exe"
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	svc, err := Lookup("zonelabeler")
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Version: "v0.0.0-bench", Revision: "bench"}
	dir := b.TempDir()
	b.SetBytes(int64(len(bin)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		img, err := Assemble(opts, svc, bin)
		if err != nil {
			b.Fatal(err)
		}
		if err := WriteLayout(filepath.Join(dir, "img"), opts.Version, img); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(bin))/(1<<20), "binary-MiB")
}
