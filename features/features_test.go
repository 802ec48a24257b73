package features

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/depharness/depharness/features/clauses"
)

func TestEveryScenarioIsTaggedWithKnownClausesAndEveryClauseIsCovered(t *testing.T) {
	ps, err := Pickles(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) == 0 {
		t.Fatal("got no scenarios, want the suite's")
	}
	for _, p := range CheckTags(ps, clauses.All()) {
		t.Error(p)
	}
}

func TestCheckTagsReportsEachKindOfProblem(t *testing.T) {
	fsys := fstest.MapFS{"x.feature": {Data: []byte(`Feature: x
  @A-1 @contract
  Scenario: fine
    Given a step

  @contract
  Scenario: untagged
    Given a step

  @A-9 @contract
  Scenario: unknown clause
    Given a step

  @B-1 @contract
  Scenario: reference clause under the contract tier
    Given a step

  @A-1 @contract @reference
  Scenario Outline: two tiers <n>
    Given a step
    Examples:
      | n |
      | 1 |
`)}}
	ps, err := Pickles(fsys)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 5 {
		t.Fatalf("got %d pickles, want 5", len(ps))
	}
	cs := []clauses.Clause{
		{ID: "A-1", Tier: clauses.Contract, Area: "a", Text: "t"},
		{ID: "B-1", Tier: clauses.Reference, Area: "a", Text: "t"},
		{ID: "C-1", Tier: clauses.Contract, Area: "a", Text: "t"},
	}
	probs := strings.Join(CheckTags(ps, cs), "\n")
	for _, want := range []string{
		`"untagged": no clause tag`,
		`tag @A-9 names no clause`,
		`"reference clause under the contract tier": got tier @contract, want @reference`,
		`"two tiers 1": got tier tags [@contract @reference], want exactly one`,
		`clause C-1 (contract) has no scenario`,
	} {
		if !strings.Contains(probs, want) {
			t.Errorf("problems lack %q; got:\n%s", want, probs)
		}
	}
	if strings.Contains(probs, `"fine"`) {
		t.Errorf("a well-tagged scenario was reported; got:\n%s", probs)
	}
}
