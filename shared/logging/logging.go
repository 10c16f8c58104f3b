// Package logging builds the log/slog logger every zonetoll service uses, from the settings in Config.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// Config holds the logging settings. Embed it in a service's configuration under the field name Log so
// its variables become ZONETOLL_LOG_LEVEL and ZONETOLL_LOG_FORMAT.
type Config struct {
	Level  string `split_words:"true" default:"info" oneof:"debug info warn error" desc:"Minimum level of log lines written."`
	Format string `split_words:"true" default:"json" oneof:"json text" desc:"Log line format: json (for log pipelines) or text (for people)."`
}

// New returns a logger writing to w, tagged with the service name so lines from several services in one
// log stream can be told apart.
func New(w io.Writer, cfg Config, service string) (*slog.Logger, error) {
	level, err := ParseLevel(cfg.Level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(cfg.Format) {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q: accepted are json and text", cfg.Format)
	}
	return slog.New(h).With("service", service), nil
}

// ParseLevel accepts the level names debug, info, warn and error in any case.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q: accepted are debug, info, warn and error", s)
}

// Discard returns a logger that drops everything; for tests and library callers that pass no logger.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
