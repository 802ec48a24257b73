// Package settings binds tables of settings to the flags of commands (a
// cobra command's pflag set). A setting is one flag (pflag) with the environment variable that stands
// for it when the flag is not given, older names of that variable still
// read, its default, help text and whether it is required. Bind puts a
// table on a flag set; Apply fills the flags not given on the command line
// from the environment and checks the required ones; the errors say what a
// value should have been and name where it came from (the flag, or the
// variable). FlagError turns pflag's parse errors into the same words, with
// a suggestion for a misspelt flag; ListenError names the flags of an
// address that could not be listened on; Usage renders the flags' help.
//
// It depends on the standard library and pflag only.
package settings

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// Setting is one setting of a command.
type Setting struct {
	// Flag is the flag's name, without dashes.
	Flag string
	// Env is the environment variable read when the flag is not given.
	// Empty means the scheme's name: Bind's prefix, an underscore, and
	// Flag in upper case with dashes as underscores.
	Env string
	// Legacy are older names of the variable, read in turn when Env is
	// unset.
	Legacy []string
	// Help says what the setting is, for --help and the README. It does
	// not state the default: that comes from Value (or Required).
	Help string
	// Value holds the setting: its default until the flag or a variable
	// sets it.
	Value pflag.Value
	// Required settings have no default; leaving one unset is an error.
	Required bool
}

// The annotations Bind puts on a flag.
const (
	annotationEnv      = "depharness/env"      // the variable, then the legacy names
	annotationRequired = "depharness/required" // present on required flags
)

// Bind defines a flag on fs for every setting of table. A setting without
// Env gets prefix + "_" + its flag name in upper case (dashes become
// underscores). The default shown is the value's text when bound; a
// required setting shows none.
func Bind(fs *pflag.FlagSet, prefix string, table ...Setting) {
	for _, s := range table {
		env := s.Env
		if env == "" {
			env = SchemeName(prefix, s.Flag)
		}
		f := fs.VarPF(s.Value, s.Flag, "", s.Help)
		if s.Value.Type() == "bool" {
			f.NoOptDefVal = "true" // --fresh means --fresh=true
		}
		if s.Required {
			f.DefValue = ""
			setAnnotation(f, annotationRequired, "true")
		}
		setAnnotation(f, annotationEnv, append([]string{env}, s.Legacy...)...)
	}
}

// SchemeName is the variable of a flag named by the scheme: prefix, an
// underscore, and the flag's name in upper case with dashes as underscores.
func SchemeName(prefix, flag string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func setAnnotation(f *pflag.Flag, key string, values ...string) {
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[key] = values
}

// Env returns the variable of f, or "" for a flag Bind did not define
// (--help, --version).
func Env(f *pflag.Flag) string {
	if names := f.Annotations[annotationEnv]; len(names) > 0 {
		return names[0]
	}
	return ""
}

// Legacy returns the older names of f's variable.
func Legacy(f *pflag.Flag) []string {
	if names := f.Annotations[annotationEnv]; len(names) > 1 {
		return names[1:]
	}
	return nil
}

// Required reports whether f is a required setting.
func Required(f *pflag.Flag) bool { return len(f.Annotations[annotationRequired]) > 0 }

// Apply sets every flag of fs that the command line did not give from its
// variable, or else from the first legacy name that is set, and then checks
// that every required flag is set. It reports every problem at once, each
// naming the flag and, for a value from the environment, the variable.
func Apply(fs *pflag.FlagSet, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Changed {
			for _, name := range f.Annotations[annotationEnv] {
				v := getenv(name)
				if v == "" {
					continue
				}
				if err := fs.Set(f.Name, v); err != nil {
					errs = append(errs, &ValueError{Flag: f.Name, Env: name, Value: v, Err: cause(err)})
				}
				break
			}
		}
		if Required(f) && !f.Changed {
			errs = append(errs, &MissingError{Flag: f.Name, Env: Env(f)})
		}
	})
	return errors.Join(errs...)
}

// cause is the parser's own error inside pflag's wrapping.
func cause(err error) error {
	var iv *pflag.InvalidValueError
	if errors.As(err, &iv) && iv.Unwrap() != nil {
		return iv.Unwrap()
	}
	return err
}

// ValueError is a value its parser refused.
type ValueError struct {
	// Flag is the setting's flag; Env the variable the value came from,
	// empty when it came from the command line.
	Flag, Env string
	Value     string
	// Err says what was expected.
	Err error
}

func (e *ValueError) Error() string {
	if e.Env != "" {
		return fmt.Sprintf("invalid value %q for %s (--%s): %v", e.Value, e.Env, e.Flag, e.Err)
	}
	return fmt.Sprintf("invalid value %q for --%s: %v", e.Value, e.Flag, e.Err)
}

func (e *ValueError) Unwrap() error { return e.Err }

// MissingError is a required setting that neither the command line nor the
// environment gave.
type MissingError struct{ Flag, Env string }

func (e *MissingError) Error() string {
	return fmt.Sprintf("--%s is required (or set %s)", e.Flag, e.Env)
}
