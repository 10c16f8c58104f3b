package buildcmd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestApp(t *testing.T) {
	var forced bool
	built := false
	app := App(Tool{
		Name: "tool", What: "the tool",
		Build: func(_ context.Context, force bool, _ io.Writer) (string, error) {
			forced, built = force, true
			return "tool v1 built", nil
		},
		Paths: func() ([]string, error) {
			if !built {
				return nil, errors.New("not built: run build")
			}
			return []string{"/cache/a", "/cache/b"}, nil
		},
	})
	var out bytes.Buffer
	app.Writer = &out
	if err := app.Run([]string{"tool", "path"}); err == nil || !strings.Contains(err.Error(), "not built") {
		t.Errorf("path before build: %v, want the not-built error", err)
	}
	if err := app.Run([]string{"tool", "build", "--force"}); err != nil || !forced {
		t.Fatalf("build --force: %v (forced %v)", err, forced)
	}
	if want := "tool v1 built:\n/cache/a\n/cache/b\n"; out.String() != want {
		t.Errorf("build printed %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := app.Run([]string{"tool", "path"}); err != nil || out.String() != "/cache/a\n/cache/b\n" {
		t.Errorf("path: %q, %v", out.String(), err)
	}
}
