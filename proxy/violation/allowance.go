package violation

import (
	"fmt"
	"sort"
	"strings"
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
		if _, dup := KnownAllowances[a.Name]; dup {
			panic("violation: duplicate allowance " + a.Name)
		}
		if _, dup := Known[a.Name]; dup {
			panic("violation: allowance " + a.Name + " is also a violation")
		}
		KnownAllowances[a.Name] = a
	}
}

// Allows reports whether the named allowance is enabled. It panics on a name
// that is not in KnownAllowances, so a typo cannot silently disable one.
func (s Set) Allows(name string) bool {
	if _, ok := KnownAllowances[name]; !ok {
		panic("violation: unknown allowance " + name)
	}
	return s[name]
}

// ParseAllowances reads a comma-separated list of allowance names. An empty
// string is the empty set; an unknown name is an error listing the known
// ones.
func ParseAllowances(list string) (Set, error) {
	s := Set{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if _, ok := KnownAllowances[n]; !ok {
			return nil, fmt.Errorf("unknown allowance %q (known: %s)", n, strings.Join(AllowanceNames(), ", "))
		}
		s[n] = true
	}
	return s, nil
}

// AllowanceNames returns the known allowance names, sorted.
func AllowanceNames() []string {
	ns := make([]string, 0, len(KnownAllowances))
	for n := range KnownAllowances {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

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
