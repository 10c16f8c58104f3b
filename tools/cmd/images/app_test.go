package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestBuildRefusesUnknownService(t *testing.T) {
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	err := app.Run([]string{"images", "build", "--version", "v1", "--revision", "r", "--out", t.TempDir(), "zonelabeller"})
	if err == nil || !strings.Contains(err.Error(), `unknown service "zonelabeller"`) || !strings.Contains(err.Error(), "zonelabeler") {
		t.Fatalf("err = %v, want an unknown-service error listing the known ones", err)
	}
	if out.Len() != 0 {
		t.Errorf("printed %q before failing; nothing should have been built", out.String())
	}
}
