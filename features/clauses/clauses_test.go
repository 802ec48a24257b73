package clauses

import (
	"bufio"
	"os"
	"regexp"
	"testing"
)

func TestEmbeddedListParses(t *testing.T) {
	cs := All()
	if len(cs) == 0 {
		t.Fatal("got no clauses, want CONTRACT.md's list")
	}
	if c, ok := ByID()["HOOK-202"]; !ok || c.Tier != Contract || c.Area != "Hooks" {
		t.Errorf("HOOK-202: got %+v, want a contract clause of area Hooks", c)
	}
}

func TestParseRejectsBadLists(t *testing.T) {
	cases := map[string]string{
		"duplicate id":  `[{"id":"A-1","tier":"contract","area":"x","text":"y"},{"id":"A-1","tier":"contract","area":"x","text":"y"}]`,
		"unknown tier":  `[{"id":"A-1","tier":"optional","area":"x","text":"y"}]`,
		"lower-case id": `[{"id":"a-1","tier":"contract","area":"x","text":"y"}]`,
		"missing text":  `[{"id":"A-1","tier":"contract","area":"x"}]`,
		"not json":      `{`,
	}
	for name, in := range cases {
		if _, err := parse([]byte(in)); err == nil {
			t.Errorf("%s: got no error, want one", name)
		}
	}
}

func TestIsTag(t *testing.T) {
	for tag, want := range map[string]bool{
		"@DEV-GET-1": true, "HOOK-202": true, "@contract": false, "@reference": false, "@wip": false, "@AUTH": false,
	} {
		if got := IsTag(tag); got != want {
			t.Errorf("IsTag(%q): got %v, want %v", tag, got, want)
		}
	}
}

// TestListMatchesTheContract compares the list with CONTRACT.md when the
// shared contract is checked out next to the repository.
func TestListMatchesTheContract(t *testing.T) {
	f, err := os.Open("../../../shared/CONTRACT.md")
	if os.IsNotExist(err) {
		t.Skip("../shared/CONTRACT.md not present")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile(`^\| ([A-Z0-9-]+) \| (contract|reference) \| (.*) \|\s*$`)
	want := map[string]Clause{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			want[m[1]] = Clause{ID: m[1], Tier: Tier(m[2]), Text: m[3]}
		}
	}
	got := ByID()
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			t.Errorf("%s: in CONTRACT.md, missing from clauses.json", id)
			continue
		}
		if g.Tier != w.Tier || g.Text != w.Text {
			t.Errorf("%s: got tier %s text %q, want tier %s text %q", id, g.Tier, g.Text, w.Tier, w.Text)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			t.Errorf("%s: in clauses.json, not in CONTRACT.md", id)
		}
	}
}
