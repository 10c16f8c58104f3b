package fileversion

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestChanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ca.crt")
	stat := func() os.FileInfo {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if err := os.WriteFile(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	first := stat()
	if Changed(first, stat()) || !Changed(nil, first) {
		t.Fatal("the same file read twice must be unchanged, and nothing loaded must count as changed")
	}
	// A volume update: a new file renamed over the old one, same size, same mtime.
	other := filepath.Join(dir, "new")
	if err := os.WriteFile(other, []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(other, first.ModTime(), first.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	swapped := stat()
	if !Changed(first, swapped) {
		t.Error("a file replaced by rename (same size and mtime) must count as changed")
	}
	// Rewritten in place with another size.
	if err := os.WriteFile(path, []byte("three"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, time.Time{}, swapped.ModTime()); err != nil {
		t.Fatal(err)
	}
	if !Changed(swapped, stat()) {
		t.Error("a file rewritten in place with another size must count as changed")
	}
}
