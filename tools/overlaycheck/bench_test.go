package overlaycheck

import (
	"path/filepath"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// BenchmarkBuildAndCheck is one full overlaycheck run: every target built with krusty and checked.
func BenchmarkBuildAndCheck(b *testing.B) {
	root, err := filepath.Abs("../..")
	if err != nil {
		b.Fatal(err)
	}
	policy, err := LoadPolicy(root)
	if err != nil {
		b.Fatal(err)
	}
	targets, err := Targets(root)
	if err != nil {
		b.Fatal(err)
	}
	fs := filesys.MakeFsOnDisk()
	b.ReportAllocs()
	for b.Loop() {
		for _, t := range targets {
			_, p, err := CheckDir(fs, t, policy)
			if err != nil {
				b.Fatal(err)
			}
			if len(p) > 0 {
				b.Fatal(p)
			}
		}
	}
	b.ReportMetric(float64(len(targets)), "targets")
}
