// Package violation names deliberate contract violations that the reference
// proxy can be told to commit, so that the compliance suite can prove it
// catches each one (depharness verify --self-check).
//
// Violations are off unless enabled explicitly (DEPHARNESS_VIOLATIONS, or
// Set in code); they exist for that proof only. The package is a leaf: it
// imports only the standard library.
package violation

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Violation is one named misbehaviour and the contract clause it breaks.
type Violation struct {
	Name   string // e.g. "logs-200"
	Clause string // e.g. "DEV-LOG-1"
	What   string // one sentence: what the proxy then does wrong
}

// Known lists every violation the reference proxy implements, by name. Each
// component registers its own in this table; a violation listed here must be
// implemented, and the self-check proves the suite catches it.
var Known = map[string]Violation{}

// register adds vs to Known; it panics on a duplicate name or a name
// that is also an allowance's, since both live in one Set.
func register(vs ...Violation) {
	for _, v := range vs {
		add(Known, KnownAllowances, v.Name, v, "violation")
	}
}

// add puts v under name in known; it panics if known or other already has
// name.
func add[V, W any](known map[string]V, other map[string]W, name string, v V, kind string) {
	if _, dup := known[name]; dup {
		panic("violation: duplicate " + kind + " " + name)
	}
	if _, dup := other[name]; dup {
		panic("violation: " + kind + " " + name + " is in both tables")
	}
	known[name] = v
}

// Set is the set of enabled violations (and allowances, see Allows). The
// nil Set enables none.
type Set map[string]bool

// On reports whether the named violation is enabled. It panics on a name that
// is not in Known, so a typo cannot silently disable a check.
func (s Set) On(name string) bool { return enabled(s, Known, "name", name) }

// Parse reads a comma-separated list of violation names. An empty string is
// the empty set; an unknown name is an error.
func Parse(list string) (Set, error) { return parse(list, Known, "violation") }

// Names returns the known violation names, sorted.
func Names() []string { return slices.Sorted(maps.Keys(Known)) }

// enabled reports whether name is in s; it panics if name is not in known.
func enabled[V any](s Set, known map[string]V, kind, name string) bool {
	if _, ok := known[name]; !ok {
		panic("violation: unknown " + kind + " " + name)
	}
	return s[name]
}

// parse reads a comma-separated list of names of known; an unknown name is
// an error naming kind and listing the known names.
func parse[V any](list string, known map[string]V, kind string) (Set, error) {
	s := Set{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := known[n]; !ok {
			return nil, fmt.Errorf("unknown %s %q (known: %s)", kind, n, strings.Join(slices.Sorted(maps.Keys(known)), ", "))
		}
		s[n] = true
	}
	return s, nil
}
