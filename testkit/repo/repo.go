// Package repo finds the zonetoll repository a tool or test runs in: the
// directory that holds go.work.
package repo

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/zonetoll/zonetoll/testkit/gate"
)

// Root walks up from dir to the nearest directory holding go.work.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.work")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("finding the repository root: no go.work above %s", dir)
		}
	}
}

// RootT is Root of the test's working directory, failing the test when
// there is none.
func RootT(t gate.TB) string {
	t.Helper()
	root, err := Root(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}
