package features

import (
	"context"
	"reflect"
	"regexp"
	"testing"

	"github.com/cucumber/godog"
)

type stepDef struct {
	re *regexp.Regexp
	fn reflect.Value
}

type stepRecorder struct{ defs []stepDef }

func (r *stepRecorder) Step(expr, fn interface{}) {
	r.defs = append(r.defs, stepDef{expr.(*regexp.Regexp), reflect.ValueOf(fn)})
}

var (
	ctxType   = reflect.TypeOf((*context.Context)(nil)).Elem()
	errType   = reflect.TypeOf((*error)(nil)).Elem()
	tableType = reflect.TypeOf((*godog.Table)(nil))
	docType   = reflect.TypeOf((*godog.DocString)(nil))
)

// TestEveryStepHasExactlyOneFittingDefinition matches every step of every
// feature file against the step definitions: exactly one must match, and
// its function must take the context, one argument per capture group
// (an int where the group is all digits) and the table or doc string.
func TestEveryStepHasExactlyOneFittingDefinition(t *testing.T) {
	rec := &stepRecorder{}
	registerAPISteps(rec)
	registerWorldSteps(rec)
	registerHookSteps(rec)
	registerCloudBodySteps(rec)
	registerAssetSteps(rec)
	registerServerSteps(rec)
	ps, err := Pickles(nil)
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	for _, p := range ps {
		for _, s := range p.Steps {
			if checked[s.Text] {
				continue
			}
			checked[s.Text] = true
			var matches []stepDef
			var groups [][]string
			for _, d := range rec.defs {
				if m := d.re.FindStringSubmatch(s.Text); m != nil {
					matches = append(matches, d)
					groups = append(groups, m[1:])
				}
			}
			if len(matches) != 1 {
				t.Errorf("%s:%d step %q: got %d matching definitions, want 1", p.URI, p.Line, s.Text, len(matches))
				continue
			}
			ft := matches[0].fn.Type()
			want := 1 + len(groups[0])
			if s.HasArgument {
				want++
			}
			if ft.NumIn() != want || ft.In(0) != ctxType || ft.NumOut() != 1 || ft.Out(0) != errType {
				t.Errorf("step %q: got func %s, want %d arguments (context first) and an error result", s.Text, ft, want)
				continue
			}
			for i, g := range groups[0] {
				in := ft.In(1 + i)
				if in.Kind() == reflect.Int && !regexp.MustCompile(`^\d+$`).MatchString(g) {
					t.Errorf("step %q: argument %d is %q, not a number", s.Text, i+1, g)
				}
			}
			if s.HasArgument {
				last := ft.In(ft.NumIn() - 1)
				if last != tableType && last != docType {
					t.Errorf("step %q: last argument %s, want *godog.Table or *godog.DocString", s.Text, last)
				}
			}
		}
	}
	t.Logf("%d distinct steps, %d definitions", len(checked), len(rec.defs))
}
