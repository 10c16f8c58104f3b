package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyTree copies the parts of the repository overlaycheck reads into dst.
func copyTree(t *testing.T, root, dst string) {
	t.Helper()
	for _, sub := range []string{"kustomize", "docs"} {
		err := filepath.WalkDir(filepath.Join(root, sub), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			if d.IsDir() {
				return os.MkdirAll(filepath.Join(dst, rel), 0o755)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestApp(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		broken   string // a kustomization.yaml written to kustomize/overlays/broken
		wantErr  bool
		wantLine string
	}{
		{name: "repository as it is", wantLine: "kustomize/overlays/labeler-only: ok"},
		{name: "latest image", broken: "resources: [../../base]\nimages:\n  - name: ghcr.io/zonetoll/zonelabeler\n    newTag: latest\n",
			wantErr: true, wantLine: "kustomize/overlays/broken: images: Deployment/zonetoll/zonelabeler"},
		{name: "does not build", broken: "resources: [../../nowhere]\n", wantErr: true, wantLine: "kustomize/overlays/broken: building"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := t.TempDir()
			copyTree(t, root, repo)
			if tt.broken != "" {
				dir := filepath.Join(repo, "kustomize", "overlays", "broken")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(tt.broken), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out bytes.Buffer
			app := newApp()
			app.Writer = &out
			err := app.Run([]string{"overlaycheck", "--repo", repo})
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v; output:\n%s", err, tt.wantErr, out.String())
			}
			if !strings.Contains(out.String(), tt.wantLine) {
				t.Errorf("output lacks %q:\n%s", tt.wantLine, out.String())
			}
		})
	}
}
