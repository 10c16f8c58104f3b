package repo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRoot(t *testing.T) {
	root := RootT(t)
	if _, err := os.Stat(filepath.Join(root, "testkit", "repo", "repo.go")); err != nil {
		t.Errorf("Root(.) = %s, which does not hold this package: %v", root, err)
	}
	deep := filepath.Join(root, "tools", "repo")
	if got, err := Root(deep); err != nil || got != root {
		t.Errorf("Root(%s) = %s, %v; want %s", deep, got, err, root)
	}
	if _, err := Root(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no go.work above") {
		t.Errorf("Root of a directory outside the repository = %v, want a no-go.work error", err)
	}
}
