// Package clauses is the machine-readable list of CONTRACT.md's clauses
// (clauses.json, embedded): ID, tier, area and text. The compliance suite
// tags every scenario with the clause IDs it checks, and the reports group
// results by clause.
//
// It imports only the standard library.
package clauses

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
)

// Tier is how binding a clause is.
type Tier string

// The two tiers of CONTRACT.md.
const (
	// Contract clauses bind any supervisor that claims the API.
	Contract Tier = "contract"
	// Reference clauses are stronger guarantees of the reference proxy; a
	// third-party target may skip them.
	Reference Tier = "reference"
)

// Clause is one clause of the contract.
type Clause struct {
	ID   string `json:"id"`
	Tier Tier   `json:"tier"`
	Area string `json:"area"`
	Text string `json:"text"`
}

//go:embed clauses.json
var raw []byte

// All returns every clause, in CONTRACT.md's order. It panics if the
// embedded list is malformed (a build defect, caught by the package test).
func All() []Clause {
	cs, err := parse(raw)
	if err != nil {
		panic(err)
	}
	return cs
}

// ByID returns the clauses keyed by ID.
func ByID() map[string]Clause {
	m := map[string]Clause{}
	for _, c := range All() {
		m[c.ID] = c
	}
	return m
}

// IsTag reports whether a scenario tag (with or without "@") names a clause
// ID: upper-case words joined by "-", like DEV-GET-1 or HOOK-202.
func IsTag(tag string) bool {
	t := strings.TrimPrefix(tag, "@")
	if t == "" || !strings.Contains(t, "-") {
		return false
	}
	for _, r := range t {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func parse(b []byte) ([]Clause, error) {
	var cs []Clause
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("clauses.json: %w", err)
	}
	seen := map[string]bool{}
	for i, c := range cs {
		switch {
		case !IsTag(c.ID):
			return nil, fmt.Errorf("clauses.json: entry %d: bad id %q", i, c.ID)
		case seen[c.ID]:
			return nil, fmt.Errorf("clauses.json: duplicate id %s", c.ID)
		case c.Tier != Contract && c.Tier != Reference:
			return nil, fmt.Errorf("clauses.json: %s: bad tier %q", c.ID, c.Tier)
		case c.Area == "" || c.Text == "":
			return nil, fmt.Errorf("clauses.json: %s: missing area or text", c.ID)
		}
		seen[c.ID] = true
	}
	return cs, nil
}
