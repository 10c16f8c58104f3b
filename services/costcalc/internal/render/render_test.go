package render

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	writers := Writers{"table": func(w io.Writer) error { _, err := io.WriteString(w, "T\n"); return err }}
	formats := []string{"table", "json"}
	tests := []struct {
		format, want, wantErr string
	}{
		{format: "", want: "T\n"},
		{format: "table", want: "T\n"},
		{format: "json", want: "{\n  \"A\": 1\n}\n"},
		{format: "csv", wantErr: `format "csv": expected one of table, json`},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		err := Write(&buf, tt.format, formats, struct{ A int }{1}, writers)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Write(%q) error = %v, want %q", tt.format, err, tt.wantErr)
			}
			continue
		}
		if err != nil || buf.String() != tt.want {
			t.Errorf("Write(%q) = %q, %v; want %q", tt.format, buf.String(), err, tt.want)
		}
	}
}
