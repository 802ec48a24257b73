// Package features is the compliance suite of the dependent-device contract
// (CONTRACT.md): the Gherkin feature files, their step definitions, the
// targets a suite runs against (any supervisor started as a command, or the
// reference proxy), the reports (console, cucumber JSON, JUnit, an HTML
// clause matrix) and the self-check that proves the suite catches each
// named violation of the reference proxy.
//
// It may import everything in the module; nothing imports it but
// cmd/depharness and its own tests.
package features

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	gherkin "github.com/cucumber/gherkin/go/v42"
	messages "github.com/cucumber/messages/go/v34"

	"github.com/depharness/depharness/features/clauses"
)

// Files holds the feature files, so a built binary carries its suite.
//
//go:embed *.feature
var Files embed.FS

// Tier tags of a scenario.
const (
	TagContract  = "@contract"
	TagReference = "@reference"
)

// Pickle is one runnable scenario (an outline gives one per example row)
// with its tags.
type Pickle struct {
	URI   string
	Name  string
	Line  int64
	Tags  []string
	Steps []PickleStep
}

// PickleStep is one step of a pickle.
type PickleStep struct {
	Text string
	// HasArgument is set when the step carries a table or a doc string.
	HasArgument bool
	// Line is the step's line in its feature file (in a Background or a
	// Scenario Outline, the line of the step as written there).
	Line int64
}

// Clauses returns the clause IDs a pickle is tagged with.
func (p Pickle) Clauses() []string {
	var out []string
	for _, t := range p.Tags {
		if clauses.IsTag(t) {
			out = append(out, strings.TrimPrefix(t, "@"))
		}
	}
	return out
}

// Pickles parses every feature file of fsys (the suite's own Files when
// nil) into its scenarios.
func Pickles(fsys fs.FS) ([]Pickle, error) {
	if fsys == nil {
		fsys = Files
	}
	names, err := fs.Glob(fsys, "*.feature")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []Pickle
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ids := &messages.Incrementing{}
		doc, err := gherkin.ParseGherkinDocument(bytes.NewReader(b), ids.NewId)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		lines := map[string]int64{}
		if doc.Feature != nil {
			for _, ch := range doc.Feature.Children {
				if bg := ch.Background; bg != nil {
					for _, st := range bg.Steps {
						lines[st.Id] = st.Location.Line
					}
				}
				if sc := ch.Scenario; sc != nil {
					for _, st := range sc.Steps {
						lines[st.Id] = st.Location.Line
					}
					lines[sc.Id] = sc.Location.Line
					for _, ex := range sc.Examples {
						for _, row := range ex.TableBody {
							lines[row.Id] = row.Location.Line
						}
					}
				}
			}
		}
		for _, p := range gherkin.Pickles(*doc, name, ids.NewId) {
			pk := Pickle{URI: name, Name: p.Name}
			for _, id := range p.AstNodeIds {
				if l, ok := lines[id]; ok {
					pk.Line = l
				}
			}
			for _, t := range p.Tags {
				pk.Tags = append(pk.Tags, t.Name)
			}
			for _, s := range p.Steps {
				ps := PickleStep{Text: s.Text, HasArgument: s.Argument != nil}
				if len(s.AstNodeIds) > 0 {
					ps.Line = lines[s.AstNodeIds[0]]
				}
				pk.Steps = append(pk.Steps, ps)
			}
			out = append(out, pk)
		}
	}
	return out, nil
}

// CheckTags checks the suite's tagging against the clause list: every
// scenario names at least one known clause and exactly one tier; a scenario
// that checks a reference clause is @reference, one that checks only
// contract clauses is @contract; every clause has at least one scenario. It
// returns one message per problem.
func CheckTags(ps []Pickle, cs []clauses.Clause) []string {
	byID := map[string]clauses.Clause{}
	for _, c := range cs {
		byID[c.ID] = c
	}
	covered := map[string]int{}
	var probs []string
	for _, p := range ps {
		where := fmt.Sprintf("%s:%d %q", p.URI, p.Line, p.Name)
		ids := p.Clauses()
		if len(ids) == 0 {
			probs = append(probs, where+": no clause tag")
		}
		wantTier := TagContract
		for _, id := range ids {
			c, ok := byID[id]
			if !ok {
				probs = append(probs, fmt.Sprintf("%s: tag @%s names no clause", where, id))
				continue
			}
			covered[id]++
			if c.Tier == clauses.Reference {
				wantTier = TagReference
			}
		}
		var tiers []string
		for _, t := range p.Tags {
			if t == TagContract || t == TagReference {
				tiers = append(tiers, t)
			}
		}
		switch {
		case len(tiers) != 1:
			probs = append(probs, fmt.Sprintf("%s: got tier tags %v, want exactly one", where, tiers))
		case tiers[0] != wantTier:
			probs = append(probs, fmt.Sprintf("%s: got tier %s, want %s", where, tiers[0], wantTier))
		}
	}
	for _, c := range cs {
		if covered[c.ID] == 0 {
			probs = append(probs, fmt.Sprintf("clause %s (%s) has no scenario", c.ID, c.Tier))
		}
	}
	return probs
}
