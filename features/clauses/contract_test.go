package clauses

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/contract.md from the template and clauses.json")

const contractDoc = "../../docs/contract.md"

func TestContractDocumentIsGenerated(t *testing.T) {
	got, err := ContractMarkdown()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.MkdirAll(filepath.Dir(contractDoc), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(contractDoc, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	have, err := os.ReadFile(contractDoc)
	if err != nil {
		t.Fatalf("%v (run go generate ./features/clauses/)", err)
	}
	if !bytes.Equal(have, got) {
		t.Errorf("docs/contract.md differs from features/clauses/contract.md.tmpl and clauses.json: run go generate ./features/clauses/ (go test -run %s -update)", t.Name())
	}
}

func TestContractDocumentHasEveryClauseAndTheHarnessSections(t *testing.T) {
	doc, err := ContractMarkdown()
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	for _, c := range All() {
		if !strings.Contains(s, "| "+c.ID+" | "+string(c.Tier)+" | ") {
			t.Errorf("the contract lacks the row of %s", c.ID)
		}
	}
	for _, want := range []string{"## Latitude", "## Harness ⇄ target interface", "BALENA_SUPERVISOR_PORT", "SIGTERM"} {
		if !strings.Contains(s, want) {
			t.Errorf("the contract lacks %q", want)
		}
	}
}

func TestRenderContractRefusesAnAreaPlacedTwiceOrNever(t *testing.T) {
	cs := []Clause{{ID: "A-1", Tier: Contract, Area: "One", Text: "a | b"}, {ID: "B-1", Tier: Reference, Area: "Two", Text: "t"}}
	out, err := renderContract("{{clauses \"One\"}}\n{{clauses \"Two\"}}\n", cs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `| A-1 | contract | a \| b |`) {
		t.Errorf("got %q, want the clause's row with its pipe escaped", out)
	}
	for _, tmpl := range []string{`{{clauses "One"}}`, `{{clauses "One"}}{{clauses "One"}}{{clauses "Two"}}`, `{{clauses "Three"}}`} {
		if _, err := renderContract(tmpl, cs); err == nil {
			t.Errorf("template %q: got no error, want one (every area exactly once, no unknown area)", tmpl)
		}
	}
}

func TestWriteListPrintsEveryClauseWithItsTierAndText(t *testing.T) {
	var b bytes.Buffer
	if err := WriteList(&b, All()); err != nil {
		t.Fatal(err)
	}
	s := b.String()
	for _, c := range All() {
		if !strings.Contains(s, c.ID) {
			t.Errorf("the list lacks %s", c.ID)
		}
	}
	if !strings.Contains(s, "AUTH-3         contract") || !strings.Contains(s, "GET /ping → 200 OK without a key") {
		t.Errorf("the list lacks AUTH-3's tier or its text without backticks:\n%s", s[:min(len(s), 800)])
	}
}
