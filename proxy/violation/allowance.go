package violation

import (
	"maps"
	"slices"
)

// Allowance is one named deviation from the reference proxy that the
// contract allows (CONTRACT.md "Latitude"): the dual of a Violation. With an
// allowance on, the reference proxy differs the way another compliant
// supervisor may, and the contract tier of the suite must still pass it.
type Allowance struct {
	Name     string // e.g. "pretty-json"
	Latitude string // the Latitude item of the contract it exercises
	What     string // one sentence: what the proxy then does differently
}

// KnownAllowances lists every allowance the reference proxy implements, by
// name. An allowance listed here must be implemented (a test holds that),
// and the self-check runs the contract tier with it on.
var KnownAllowances = map[string]Allowance{}

// registerAllowances adds as to KnownAllowances; it panics on a duplicate
// name or a name that is also a violation's, since both live in one Set.
func registerAllowances(as ...Allowance) {
	for _, a := range as {
		add(KnownAllowances, Known, a.Name, a, "allowance")
	}
}

// Allows reports whether the named allowance is enabled. It panics on a name
// that is not in KnownAllowances, so a typo cannot silently disable one.
func (s Set) Allows(name string) bool { return enabled(s, KnownAllowances, "allowance", name) }

// ParseAllowances reads a comma-separated list of allowance names. An empty
// string is the empty set; an unknown name is an error listing the known
// ones.
func ParseAllowances(list string) (Set, error) { return parse(list, KnownAllowances, "allowance") }

// AllowanceNames returns the known allowance names, sorted.
func AllowanceNames() []string { return slices.Sorted(maps.Keys(KnownAllowances)) }

// Union returns a new Set holding the names of s and of t (e.g. the enabled
// violations and allowances, handed to the proxy's parts as one Set).
func (s Set) Union(t Set) Set {
	u := make(Set, len(s)+len(t))
	for n, on := range s {
		u[n] = on
	}
	for n, on := range t {
		u[n] = u[n] || on
	}
	return u
}
