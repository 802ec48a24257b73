package settings

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// What a refused value should have been, in the words the errors use.
var (
	ErrWholeNumber = errors.New("expected a whole number")
	ErrDuration    = errors.New("expected a duration with a unit, like 500ms or 2s")
	ErrBool        = errors.New("expected true or false")
)

// value is a pflag.Value of type T: the variable it writes, its parser and
// how it prints.
type value[T any] struct {
	p      *T
	typ    string
	parse  func(string) (T, error)
	format func(T) string
}

func (v *value[T]) String() string { return v.format(*v.p) }
func (v *value[T]) Type() string   { return v.typ }

func (v *value[T]) Set(s string) error {
	x, err := v.parse(s)
	if err != nil {
		return err
	}
	*v.p = x
	return nil
}

func newValue[T any](p *T, def T, typ string, parse func(string) (T, error), format func(T) string) pflag.Value {
	*p = def
	return &value[T]{p: p, typ: typ, parse: parse, format: format}
}

// Text is a string setting with default def.
func Text(p *string, def string) pflag.Value {
	return newValue(p, def, "string", func(s string) (string, error) { return s, nil }, identity)
}

// Checked is a string setting whose values check accepts; typ says what a
// value looks like in --help (url, host:port, list…).
func Checked(p *string, def, typ string, check func(string) error) pflag.Value {
	return newValue(p, def, typ, func(s string) (string, error) { return s, check(s) }, identity)
}

// OneOf is a string setting that takes one of choices.
func OneOf(p *string, def string, choices ...string) pflag.Value {
	want := errors.New("expected one of " + strings.Join(choices, ", "))
	return newValue(p, def, strings.Join(choices, "|"), func(s string) (string, error) {
		for _, c := range choices {
			if s == c {
				return s, nil
			}
		}
		return "", want
	}, identity)
}

// Int is a whole-number setting with default def.
func Int(p *int, def int) pflag.Value {
	return newValue(p, def, "int", func(s string) (int, error) {
		n, err := ParseWholeNumber(s, strconv.IntSize)
		return int(n), err
	}, strconv.Itoa)
}

// Int64 is a 64-bit whole-number setting with default def.
func Int64(p *int64, def int64) pflag.Value {
	return newValue(p, def, "int", func(s string) (int64, error) { return ParseWholeNumber(s, 64) },
		func(n int64) string { return strconv.FormatInt(n, 10) })
}

// Bool is a true-or-false setting with default def; the flag alone means
// true.
func Bool(p *bool, def bool) pflag.Value {
	return newValue(p, def, "bool", func(s string) (bool, error) {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return false, ErrBool
		}
		return b, nil
	}, strconv.FormatBool)
}

// Duration is a duration setting (Go syntax: 500ms, 2s, 1m30s) with
// default def.
func Duration(p *time.Duration, def time.Duration) pflag.Value {
	return newValue(p, def, "duration", ParseDuration, FormatDuration)
}

// FormatDuration is d as Go writes it, without zero trailing units: 1m,
// not 1m0s; 1h, not 1h0m0s.
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ParseWholeNumber reads a base-10 integer of at most bits bits, saying
// what was expected when s is not one.
func ParseWholeNumber(s string, bits int) (int64, error) {
	n, err := strconv.ParseInt(s, 10, bits)
	if errors.Is(err, strconv.ErrRange) {
		return 0, errors.New("expected a whole number, and this one is out of range")
	}
	if err != nil {
		return 0, ErrWholeNumber
	}
	return n, nil
}

// ParseDuration reads a Go duration, saying what was expected (a unit,
// most often) when s is not one.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, ErrDuration
	}
	return d, nil
}

func identity(s string) string { return s }
