package gate

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"testing"
)

// recorder is a TB that records how the gate ended the test instead of ending it.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                          {}
func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestNeed(t *testing.T) {
	setShort(t, "false")
	missing := errors.New("kube-apiserver not found")
	tests := []struct {
		name     string
		require  string
		err      error
		wantSkip bool
		wantFail bool
	}{
		{"present", "1", nil, false, false},
		{"present, not required", "", nil, false, false},
		{"missing, required", "1", missing, false, true},
		{"missing, not required", "", missing, true, false},
		{"missing, explicitly allowed", "0", missing, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvRequireAll, tt.require)
			r := &recorder{TB: t}
			Need(r, "the test cluster", tt.err, "make testcluster")
			if (r.skipped != "") != tt.wantSkip || (r.failed != "") != tt.wantFail {
				t.Fatalf("skipped=%q failed=%q, want skip %v fail %v", r.skipped, r.failed, tt.wantSkip, tt.wantFail)
			}
			for _, msg := range []string{r.skipped, r.failed} {
				if msg == "" {
					continue
				}
				// The message says what is missing, why, and how to get it.
				for _, want := range []string{"the test cluster", "kube-apiserver not found", "make testcluster", EnvRequireAll} {
					if !strings.Contains(msg, want) {
						t.Errorf("message %q lacks %q", msg, want)
					}
				}
			}
		})
	}
}

func TestCommand(t *testing.T) {
	setShort(t, "false")
	t.Setenv(EnvRequireAll, "1")
	r := &recorder{TB: t}
	if p := Command(r, "sh", "apt-get install dash"); p == "" || r.failed != "" {
		t.Fatalf("Command(sh) = %q, failed %q", p, r.failed)
	}
	Command(r, "no-such-command-zonetoll", "apt-get install nothing")
	if !strings.Contains(r.failed, "apt-get install nothing") {
		t.Fatalf("a missing command under %s=1 must fail with its install hint, got %q", EnvRequireAll, r.failed)
	}
}

// setShort sets -short for one test, so the table runs the same under make check and make test.
func setShort(t *testing.T, v string) {
	f := flag.Lookup("test.short")
	old := f.Value.String()
	if err := f.Value.Set(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Value.Set(old) })
}

func TestShortSkipsEvenWhenPresent(t *testing.T) {
	setShort(t, "true")
	t.Setenv(EnvRequireAll, "1")
	r := &recorder{TB: t}
	Need(r, "the test cluster", nil, "make testcluster")
	if r.skipped == "" || r.failed != "" {
		t.Fatalf("under -short a gated test must skip, got skipped=%q failed=%q", r.skipped, r.failed)
	}
}
