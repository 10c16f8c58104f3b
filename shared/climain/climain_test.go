package climain

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name     string
		action   func(*cli.Context) error
		wantCode int
		wantErr  string
	}{
		{"success", func(*cli.Context) error { return nil }, 0, ""},
		{"failure names the command", func(*cli.Context) error { return errors.New("building: no go.work") }, 1, "tool: building: no go.work\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			app := &cli.App{Name: "tool", Action: tt.action}
			if code := Run(context.Background(), app, []string{"tool"}, &stderr); code != tt.wantCode || stderr.String() != tt.wantErr {
				t.Errorf("Run = %d, stderr %q; want %d, %q", code, stderr.String(), tt.wantCode, tt.wantErr)
			}
		})
	}
}
