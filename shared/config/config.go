// Package config loads a service's settings from ZONETOLL_* environment variables into its configuration
// struct (kelseyhightower/envconfig), and describes those settings for --help from the same struct, so the
// help text can never drift from what the service really reads.
//
// Struct tags used beside envconfig's own (split_words, default, required):
//   - desc:"…"      one sentence shown in --help;
//   - oneof:"a b c" the accepted values of a string setting, checked at load.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// Prefix is put before every variable name: a field ListenAddress in a nested struct HTTP is read from
// ZONETOLL_HTTP_LISTEN_ADDRESS.
const Prefix = "ZONETOLL"

// Validator is implemented by configuration structs that check relations between settings after they
// were parsed (a minimum below a maximum, a file that must exist). Errors should come from Invalid so
// they name the variable.
type Validator interface {
	Validate() error
}

// Error says which setting is wrong, the value it had, and what would have been accepted.
type Error struct {
	Key      string // the environment variable, e.g. ZONETOLL_HTTP_READ_TIMEOUT
	Value    string // the value seen; empty for a missing setting
	Missing  bool
	Accepted string // what the setting accepts, in words
}

func (e *Error) Error() string {
	if e.Missing {
		return fmt.Sprintf("missing required setting %s: expected %s", e.Key, e.Accepted)
	}
	return fmt.Sprintf("invalid setting %s=%q: expected %s", e.Key, e.Value, e.Accepted)
}

// Invalid builds the error a Validate method returns for one bad setting.
func Invalid(key, value, accepted string) error {
	return &Error{Key: key, Value: value, Accepted: accepted}
}

// Setting describes one variable of a configuration struct.
type Setting struct {
	Key      string
	Type     string // in words: "duration", "integer", "comma-separated list of strings", …
	Default  string
	Required bool
	Desc     string
	OneOf    []string
	Value    string // the value a Setting was resolved from: the environment, else the default
	IsSet    bool   // whether the environment set it
}

// Accepted says in words what the setting takes.
func (s Setting) Accepted() string {
	if len(s.OneOf) > 0 {
		return "one of " + strings.Join(s.OneOf, ", ")
	}
	return s.Type
}

// Settings lists every variable the struct that spec points to reads, in field order, with the value
// the current environment gives it.
func Settings(spec any) ([]Setting, error) {
	var out []Setting
	funcs := template.FuncMap{"row": func(key string, tags reflect.StructTag, field reflect.Value) string {
		s := Setting{
			Key:      key,
			Type:     typeWords(field.Type()),
			Default:  tags.Get("default"),
			Required: tags.Get("required") == "true",
			Desc:     tags.Get("desc"),
			OneOf:    strings.Fields(tags.Get("oneof")),
		}
		s.Value, s.IsSet = os.LookupEnv(key)
		if !s.IsSet {
			s.Value = s.Default
		}
		out = append(out, s)
		return ""
	}}
	// envconfig walks nested and embedded structs and names the keys; a template is its public hook into
	// that walk, so our list uses exactly the names Process reads.
	tmpl := template.Must(template.New("settings").Funcs(funcs).Parse(`{{range .}}{{row .Key .Tags .Field}}{{end}}`))
	if err := envconfig.Usaget(Prefix, spec, io.Discard, tmpl); err != nil {
		return nil, fmt.Errorf("listing settings: %w", err)
	}
	return out, nil
}

// Load fills spec (a pointer to a struct) from the environment. Any wrong or missing setting gives an
// *Error naming the variable, the value and what is accepted; a service prints it and exits.
// Variables with the ZONETOLL_ prefix that spec does not know are returned as unknown, so a typo can be
// reported rather than silently ignored.
func Load(spec any) (unknown []string, err error) {
	settings, err := Settings(spec)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]Setting, len(settings))
	for _, s := range settings {
		byKey[s.Key] = s
		if s.Required && !s.IsSet && s.Default == "" {
			return nil, &Error{Key: s.Key, Missing: true, Accepted: s.Accepted()}
		}
		if len(s.OneOf) > 0 && !slices.Contains(s.OneOf, s.Value) {
			return nil, &Error{Key: s.Key, Value: s.Value, Accepted: s.Accepted()}
		}
	}
	if err := envconfig.Process(Prefix, spec); err != nil {
		var pe *envconfig.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{Key: pe.KeyName, Value: pe.Value, Accepted: byKey[pe.KeyName].Accepted()}
		}
		return nil, fmt.Errorf("reading settings: %w", err)
	}
	if v, ok := spec.(Validator); ok {
		if err := v.Validate(); err != nil {
			return nil, err
		}
	}
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if _, known := byKey[key]; !known && strings.HasPrefix(key, Prefix+"_") {
			unknown = append(unknown, key)
		}
	}
	slices.Sort(unknown)
	return unknown, nil
}

// WriteUsage writes a table of every setting with its default and description, for --help.
func WriteUsage(w io.Writer, spec any) error {
	settings, err := Settings(spec)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tACCEPTS\tDESCRIPTION")
	for _, s := range settings {
		def := s.Default
		switch {
		case s.Required:
			def = "(required)"
		case def == "":
			def = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Key, def, s.Accepted(), s.Desc)
	}
	return tw.Flush()
}

// WriteMarkdown writes the settings as a Markdown table, for the generated docs/settings pages.
func WriteMarkdown(w io.Writer, spec any) error {
	settings, err := Settings(spec)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "| Variable | Default | Accepts | Description |\n| --- | --- | --- | --- |"); err != nil {
		return err
	}
	for _, s := range settings {
		def := "`" + s.Default + "`"
		switch {
		case s.Required:
			def = "(required)"
		case s.Default == "":
			def = "(empty)"
		}
		if _, err := fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", s.Key, def, s.Accepted(), strings.ReplaceAll(s.Desc, "|", "\\|")); err != nil {
			return err
		}
	}
	return nil
}

var durationType = reflect.TypeFor[time.Duration]()

func typeWords(t reflect.Type) string {
	if t == durationType {
		return "a duration such as 500ms, 10s or 1m30s"
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a non-negative integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a comma-separated list of " + strings.TrimPrefix(strings.TrimPrefix(typeWords(t.Elem()), "an "), "a ") + "s"
	case reflect.Map:
		return "comma-separated key:value pairs"
	}
	return t.String()
}
