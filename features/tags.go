package features

import (
	"fmt"
	"sort"
	"strings"
)

// godog v0.16 filters scenarios with a flat expression: terms separated by
// "," (OR), each a conjunction of tags separated by "&&", a tag negated by
// "~". It has no parentheses: "(@A,@B) && ~@reference" splits at the comma
// into "(@A" and "@B) && ~@reference", tags named "(A" and "B)" that no
// scenario has, so it selects nothing, silently. GodogTags turns an
// expression with parentheses into that flat form (its disjunctive normal
// form), so that any combination of expressions selects what it says.

// tagLit is one tag, possibly negated.
type tagLit struct {
	tag string // with its @
	not bool
}

// tagDNF is a disjunction of conjunctions. The empty DNF selects nothing;
// a DNF holding an empty conjunction selects everything.
type tagDNF [][]tagLit

// GodogTags returns expr in godog's flat syntax. expr uses godog's
// operators (",", "&&", "~") and may group with parentheses. An empty expr
// selects every scenario and stays empty; an expression that can select no
// scenario (@A && ~@A) is an error, since godog would read its empty form
// as "everything".
func GodogTags(expr string) (string, error) {
	if strings.TrimSpace(expr) == "" {
		return "", nil
	}
	p := &tagParser{toks: tokenizeTags(expr), expr: expr}
	d, err := p.or()
	if err != nil {
		return "", err
	}
	if p.i < len(p.toks) {
		return "", fmt.Errorf("tag expression %q: unexpected %q", expr, p.toks[p.i])
	}
	terms := make([]string, 0, len(d))
	for _, c := range d {
		if len(c) == 0 {
			return "", nil // always true: every scenario
		}
		lits := make([]string, 0, len(c))
		for _, l := range c {
			if l.not {
				lits = append(lits, "~"+l.tag)
			} else {
				lits = append(lits, l.tag)
			}
		}
		terms = append(terms, strings.Join(lits, " && "))
	}
	if len(terms) == 0 {
		return "", fmt.Errorf("tag expression %q can select no scenario", expr)
	}
	return strings.Join(terms, ","), nil
}

// AndTags is the conjunction of two tag expressions (either may be empty).
func AndTags(a, b string) string {
	switch {
	case strings.TrimSpace(a) == "":
		return b
	case strings.TrimSpace(b) == "":
		return a
	}
	return "(" + a + ") && (" + b + ")"
}

func tokenizeTags(s string) []string {
	var toks []string
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '(' || c == ')' || c == ',' || c == '~':
			toks = append(toks, string(c))
			i++
		case strings.HasPrefix(s[i:], "&&"):
			toks = append(toks, "&&")
			i += 2
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t(),~&", rune(s[j])) {
				j++
			}
			if j == i {
				j++ // a lone '&'
			}
			toks = append(toks, s[i:j])
			i = j
		}
	}
	return toks
}

type tagParser struct {
	toks []string
	i    int
	expr string
}

func (p *tagParser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

func (p *tagParser) or() (tagDNF, error) {
	return p.binary(",", p.and, func(d, e tagDNF) tagDNF { return append(d, e...) })
}

func (p *tagParser) and() (tagDNF, error) { return p.binary("&&", p.unary, andDNF) }

// binary parses operands joined by op (left to right), each with operand,
// and combines them with combine.
func (p *tagParser) binary(op string, operand func() (tagDNF, error), combine func(d, e tagDNF) tagDNF) (tagDNF, error) {
	d, err := operand()
	if err != nil {
		return nil, err
	}
	for p.peek() == op {
		p.i++
		e, err := operand()
		if err != nil {
			return nil, err
		}
		d = combine(d, e)
	}
	return d, nil
}

func (p *tagParser) unary() (tagDNF, error) {
	switch t := p.peek(); {
	case t == "~":
		p.i++
		d, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notDNF(d), nil
	case t == "(":
		p.i++
		d, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("tag expression %q: missing )", p.expr)
		}
		p.i++
		return d, nil
	case strings.HasPrefix(t, "@") && len(t) > 1:
		p.i++
		return tagDNF{{{tag: t}}}, nil
	case t == "":
		return nil, fmt.Errorf("tag expression %q ends where a tag is expected", p.expr)
	default:
		return nil, fmt.Errorf("tag expression %q: got %q where a tag (@NAME), ~ or ( is expected; use , for OR and && for AND", p.expr, t)
	}
}

// andDNF distributes a && b into a DNF, dropping contradictory terms.
func andDNF(a, b tagDNF) tagDNF {
	var out tagDNF
	for _, x := range a {
	next:
		for _, y := range b {
			term := append(append([]tagLit{}, x...), y...)
			seen := map[string]bool{}
			var dedup []tagLit
			for _, l := range term {
				if v, ok := seen[l.tag]; ok {
					if v != l.not {
						continue next // @A && ~@A
					}
					continue
				}
				seen[l.tag] = l.not
				dedup = append(dedup, l)
			}
			sort.Slice(dedup, func(i, j int) bool { return dedup[i].tag < dedup[j].tag })
			out = append(out, dedup)
		}
	}
	return out
}

// notDNF negates a DNF (De Morgan): the conjunction over its terms of the
// disjunction of their negated literals.
func notDNF(d tagDNF) tagDNF {
	out := tagDNF{{}} // true
	for _, term := range d {
		var alt tagDNF
		for _, l := range term {
			alt = append(alt, []tagLit{{tag: l.tag, not: !l.not}})
		}
		out = andDNF(out, alt) // an empty term gives false: out becomes empty
	}
	return out
}
