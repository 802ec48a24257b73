package features

import (
	"strings"
	"testing"
)

func TestGodogTagsFlattensParenthesesIntoWhatGodogReads(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "", want: ""},
		{in: "@HOOK-202", want: "@HOOK-202"},
		{in: "~@reference", want: "~@reference"},
		{in: "@A,@B", want: "@A,@B"},
		{in: "(@A,@B) && (~@reference)", want: "@A && ~@reference,@B && ~@reference"},
		{in: "(@A,@B) && (@C,@D)", want: "@A && @C,@A && @D,@B && @C,@B && @D"},
		{in: "~(@A,@B)", want: "~@A && ~@B"},
		{in: "~(@A && @B)", want: "~@A,~@B"},
		{in: "(@A) && (@A)", want: "@A"},
		{in: "@A && ~@A,@B", want: "@B"},
		{in: "@A && ~@A", err: "can select no scenario"},
		{in: "(@A,@B", err: "missing )"},
		{in: "@A and @B", err: `unexpected "and"`},
		{in: "@A,,@B", err: `got ","`},
		{in: "@A &&", err: "ends where a tag is expected"},
	} {
		got, err := GodogTags(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("GodogTags(%q) = %q, %v; want an error saying %q", tc.in, got, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("GodogTags(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParenthesisedSelectionsSelectTheirScenarios(t *testing.T) {
	// The self-check's combination of a clause list with --tags: today's
	// godog reads the parenthesised form as two tags nobody has.
	expr := AndTags("@AUTH-1,@AUTH-3", "~@reference")
	flat, err := GodogTags(expr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := countSelected(Files, flat)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	ps, _ := Pickles(nil)
	for _, p := range ps {
		ref, hit := false, false
		for _, tag := range p.Tags {
			ref = ref || tag == "@reference"
			hit = hit || tag == "@AUTH-1" || tag == "@AUTH-3"
		}
		if hit && !ref {
			want++
		}
	}
	if want == 0 || n != want {
		t.Fatalf("%q (as %q) selects %d scenarios, want %d", expr, flat, n, want)
	}
	if raw, _ := countSelected(Files, expr); raw != 0 {
		t.Logf("note: godog itself now selects %d for the parenthesised form", raw)
	}
}
