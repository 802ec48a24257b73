package clauses

import (
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"strings"
	"text/template"
)

//go:generate go test -run ^TestContractDocumentIsGenerated$ -update .

// contractTemplate is the contract's prose (roles, the device object, the
// latitude, the harness interface, historical deviations) with a
// {{clauses "Area"}} call where each area's clause table goes: together
// with clauses.json, the source of docs/contract.md.
//
//go:embed contract.md.tmpl
var contractTemplate string

// ContractMarkdown renders the contract document (docs/contract.md): the
// template's prose with every clause of clauses.json in its area's table.
// Every area must be placed exactly once.
func ContractMarkdown() ([]byte, error) {
	cs, err := parse(raw)
	if err != nil {
		return nil, err
	}
	return renderContract(contractTemplate, cs)
}

func renderContract(tmpl string, cs []Clause) ([]byte, error) {
	used := map[string]int{}
	t, err := template.New("contract").Option("missingkey=error").Funcs(template.FuncMap{
		"clauses": func(area string) (string, error) {
			used[area]++
			var b strings.Builder
			b.WriteString("| ID | Tier | Clause |\n|---|---|---|\n")
			n := 0
			for _, c := range cs {
				if c.Area != area {
					continue
				}
				n++
				text := strings.ReplaceAll(strings.ReplaceAll(c.Text, "|", `\|`), "\n", " ")
				fmt.Fprintf(&b, "| %s | %s | %s |\n", c.ID, c.Tier, text)
			}
			if n == 0 {
				return "", fmt.Errorf("no clause has area %q", area)
			}
			return strings.TrimSuffix(b.String(), "\n"), nil
		},
	}).Parse(tmpl)
	if err != nil {
		return nil, fmt.Errorf("contract template: %w", err)
	}
	var out bytes.Buffer
	if err := t.Execute(&out, nil); err != nil {
		return nil, fmt.Errorf("contract template: %w", err)
	}
	for _, c := range cs {
		if used[c.Area] != 1 {
			return nil, fmt.Errorf("contract template: area %q (clause %s) is placed %d times, want once", c.Area, c.ID, used[c.Area])
		}
	}
	return out.Bytes(), nil
}

// WriteList prints the clauses for a terminal: ID, tier and area on one
// line, the text (its Markdown backticks dropped) wrapped and indented
// below.
func WriteList(w io.Writer, cs []Clause) error {
	n := map[Tier]int{}
	for _, c := range cs {
		n[c.Tier]++
		if _, err := fmt.Fprintf(w, "%-14s %-9s  %s\n", c.ID, c.Tier, c.Area); err != nil {
			return err
		}
		for _, l := range wrap(strings.ReplaceAll(c.Text, "`", ""), 92) {
			if _, err := fmt.Fprintf(w, "    %s\n", l); err != nil {
				return err
			}
		}
	}
	_, err := fmt.Fprintf(w, "\n%d clauses: %d contract, %d reference. The whole contract (the harness interface and the latitude too) is docs/contract.md.\n",
		len(cs), n[Contract], n[Reference])
	return err
}

// wrap breaks s into lines of at most width runes, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	var cur []string
	l := 0
	for _, word := range strings.Fields(s) {
		wl := len([]rune(word))
		if l > 0 && l+1+wl > width {
			lines = append(lines, strings.Join(cur, " "))
			cur, l = nil, 0
		}
		if l > 0 {
			l++
		}
		cur = append(cur, word)
		l += wl
	}
	if len(cur) > 0 {
		lines = append(lines, strings.Join(cur, " "))
	}
	return lines
}
