package violation

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// checkDescribed checks that known is not empty and that each entry is
// under its own name (the first of fields) with every other field set.
func checkDescribed[V any](t *testing.T, kind string, known map[string]V, fields func(V) []string) {
	t.Helper()
	if len(known) == 0 {
		t.Fatalf("no %ss are registered", kind)
	}
	for name, v := range known {
		f := fields(v)
		if f[0] != name || slices.Contains(f, "") {
			t.Errorf("%s %q = %+v, want its name and every field set", kind, name, v)
		}
	}
}

func TestEveryKnownViolationNamesAClause(t *testing.T) {
	checkDescribed(t, "violation", Known, func(v Violation) []string { return []string{v.Name, v.Clause, v.What} })
}

func TestParseAcceptsKnownNamesAndRefusesUnknownOnes(t *testing.T) {
	name := Names()[0]
	s, err := Parse(" " + name + " ,, ")
	if err != nil || !s.On(name) || len(s) != 1 {
		t.Fatalf("Parse(%q) = %v, %v; want a set holding only it", name, s, err)
	}
	if s, err := Parse(""); err != nil || len(s) != 0 {
		t.Errorf("Parse(\"\") = %v, %v; want the empty set", s, err)
	}
	if _, err := Parse(name + ",no-such-violation"); err == nil || !strings.Contains(err.Error(), `"no-such-violation"`) {
		t.Errorf("Parse with an unknown name: err = %v, want it named", err)
	}
}

func TestOnPanicsOnANameThatIsNotKnown(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("On(typo) did not panic; a typo would silently disable a check")
		}
	}()
	Set(nil).On("no-such-violation")
}

// sources is the non-test Go source under roots, but this package's.
func sources(t *testing.T, roots ...string) string {
	t.Helper()
	var src strings.Builder
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || strings.Contains(path, "violation") {
				return nil
			}
			b, err := os.ReadFile(path)
			src.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return src.String()
}

func TestEveryKnownViolationIsHonouredByTheProxy(t *testing.T) {
	// The proxy's sources (this package's parent) call On("<name>").
	src := sources(t, "..")
	for _, name := range Names() {
		if !strings.Contains(src, `On("`+name+`")`) {
			t.Errorf("violation %q is registered but no proxy code checks On(%q)", name, name)
		}
	}
}

func TestEveryKnownAllowanceNamesALatitude(t *testing.T) {
	checkDescribed(t, "allowance", KnownAllowances, func(a Allowance) []string { return []string{a.Name, a.Latitude, a.What} })
	for name := range KnownAllowances {
		if _, clash := Known[name]; clash {
			t.Errorf("allowance %q is also a violation", name)
		}
	}
}

func TestParseAllowancesAcceptsKnownNamesAndRefusesUnknownOnes(t *testing.T) {
	name := AllowanceNames()[0]
	s, err := ParseAllowances(" " + name + " ,, ")
	if err != nil || !s.Allows(name) || len(s) != 1 {
		t.Fatalf("ParseAllowances(%q) = %v, %v; want a set holding only it", name, s, err)
	}
	if _, err := ParseAllowances(name + ",lax"); err == nil || !strings.Contains(err.Error(), `"lax"`) || !strings.Contains(err.Error(), name) {
		t.Errorf("ParseAllowances with an unknown name: err = %v, want it named with the known ones", err)
	}
	if _, err := ParseAllowances(Names()[0]); err == nil {
		t.Errorf("ParseAllowances(%q) accepted a violation's name", Names()[0])
	}
	u := s.Union(Set{Names()[0]: true})
	if !u.Allows(name) || !u.On(Names()[0]) || len(s) != 1 {
		t.Errorf("Union = %v (s %v), want both names in a new set", u, s)
	}
}

func TestAllowsPanicsOnANameThatIsNotKnown(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Allows(typo) did not panic; a typo would silently disable an allowance")
		}
	}()
	Set(nil).Allows("no-such-allowance")
}

func TestEveryKnownAllowanceIsImplemented(t *testing.T) {
	// The proxy's sources (this package's parent) and its command call
	// Allows("<name>").
	src := sources(t, "..", filepath.Join("..", "..", "cmd", "depharness"))
	for _, name := range AllowanceNames() {
		if !strings.Contains(src, `Allows("`+name+`")`) {
			t.Errorf("allowance %q is registered but no proxy code checks Allows(%q)", name, name)
		}
	}
}
