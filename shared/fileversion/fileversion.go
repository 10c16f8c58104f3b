// Package fileversion tells whether a file the services re-read (TLS certificates and keys, CA
// bundles) is another version than the one they loaded. A Secret or ConfigMap volume swaps a symlink to
// a new directory (another inode, the mtime not necessarily newer); an editor or cp rewrites in place
// (mtime, size).
package fileversion

import "os"

// Changed reports whether b (a fresh os.Stat) is another version of the file than a; a nil a (nothing
// loaded yet) counts as changed.
func Changed(a, b os.FileInfo) bool {
	return a == nil || !os.SameFile(a, b) || !a.ModTime().Equal(b.ModTime()) || a.Size() != b.Size()
}
