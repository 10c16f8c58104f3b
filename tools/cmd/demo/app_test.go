package main

import (
	"bytes"
	"strings"
	"testing"
)

// --help names every flag a user of make demo can pass through ZONETOLL_DEMO_ARGS.
func TestHelp(t *testing.T) {
	var out bytes.Buffer
	if err := newApp(&out, &out).Run([]string{"demo", "--help"}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"--phase1", "--phase2", "--no-restarts", "--hold", "--keep", "--out"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help lacks %s:\n%s", f, out.String())
		}
	}
}
