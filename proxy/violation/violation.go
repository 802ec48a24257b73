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
	"sort"
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

// register adds v to Known; it panics on a duplicate name.
func register(vs ...Violation) {
	for _, v := range vs {
		if _, dup := Known[v.Name]; dup {
			panic("violation: duplicate " + v.Name)
		}
		if _, dup := KnownAllowances[v.Name]; dup {
			panic("violation: " + v.Name + " is also an allowance")
		}
		Known[v.Name] = v
	}
}

// Set is the set of enabled violations (and allowances, see Allows). The
// nil Set enables none.
type Set map[string]bool

// On reports whether the named violation is enabled. It panics on a name that
// is not in Known, so a typo cannot silently disable a check.
func (s Set) On(name string) bool {
	if _, ok := Known[name]; !ok {
		panic("violation: unknown name " + name)
	}
	return s[name]
}

// Parse reads a comma-separated list of violation names. An empty string is
// the empty set; an unknown name is an error.
func Parse(list string) (Set, error) {
	s := Set{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := Known[n]; !ok {
			return nil, fmt.Errorf("unknown violation %q (known: %s)", n, strings.Join(Names(), ", "))
		}
		s[n] = true
	}
	return s, nil
}

// Names returns the known violation names, sorted.
func Names() []string {
	ns := make([]string, 0, len(Known))
	for n := range Known {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}
