// Package render writes a command's result in the format its --format flag names: every one-shot
// command of costcalc (report, advise, compare, estimate) offers JSON the same way and a table by
// default, plus formats of its own.
package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Writers are a result's own formats by name ("table", "csv", "html", …); JSON needs none.
type Writers map[string]func(io.Writer) error

// Write writes v to w in format: "json" is v as indented JSON, "" is "table", any other name is
// written by its entry in writers. formats lists every format the command offers, for the error.
func Write(w io.Writer, format string, formats []string, v any, writers Writers) error {
	if format == "" {
		format = "table"
	}
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if write, ok := writers[format]; ok {
		return write(w)
	}
	return fmt.Errorf("format %q: expected one of %s", format, strings.Join(formats, ", "))
}
