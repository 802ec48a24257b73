package violation

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEveryKnownViolationNamesAClause(t *testing.T) {
	if len(Known) == 0 {
		t.Fatal("no violations are registered")
	}
	for name, v := range Known {
		if v.Name != name || v.Clause == "" || v.What == "" {
			t.Errorf("violation %q = %+v, want its name, a clause and a description", name, v)
		}
	}
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

func TestEveryKnownViolationIsHonouredByTheProxy(t *testing.T) {
	// Read the proxy's sources (this package's parent) for On("<name>").
	var src strings.Builder
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
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
	for _, name := range Names() {
		if !strings.Contains(src.String(), `On("`+name+`")`) {
			t.Errorf("violation %q is registered but no proxy code checks On(%q)", name, name)
		}
	}
}

func TestEveryKnownAllowanceNamesALatitude(t *testing.T) {
	if len(KnownAllowances) == 0 {
		t.Fatal("no allowances are registered")
	}
	for name, a := range KnownAllowances {
		if a.Name != name || a.Latitude == "" || a.What == "" {
			t.Errorf("allowance %q = %+v, want its name, a latitude and a description", name, a)
		}
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
	// Read the proxy's sources (this package's parent) and its command for
	// Allows("<name>").
	var src strings.Builder
	for _, root := range []string{"..", filepath.Join("..", "..", "cmd", "depharness")} {
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
	for _, name := range AllowanceNames() {
		if !strings.Contains(src.String(), `Allows("`+name+`")`) {
			t.Errorf("allowance %q is registered but no proxy code checks Allows(%q)", name, name)
		}
	}
}
