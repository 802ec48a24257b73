package features

import (
	"context"
	"regexp"
	"sync"

	"github.com/cucumber/godog"
)

// stepper is where step definitions are registered: *godog.ScenarioContext,
// or a recorder in tests.
type stepper interface {
	Step(expr, stepFunc interface{})
}

// registerSteps registers every step definition of the suite, and the
// step hooks that turn httpexpect failures into step errors.
func registerSteps(sc *godog.ScenarioContext) {
	sc.StepContext().Before(func(ctx context.Context, _ *godog.Step) (context.Context, error) {
		if st := scenarioOf(ctx); st != nil {
			st.rep = &collector{}
		}
		return ctx, nil
	})
	sc.StepContext().After(func(ctx context.Context, step *godog.Step, _ godog.StepResultStatus, err error) (context.Context, error) {
		st := scenarioOf(ctx)
		if st == nil || st.rep == nil {
			return ctx, nil
		}
		if err == nil {
			err = st.rep.err()
		}
		if err != nil && st.failed == nil && st.pickle != nil {
			st.failed = &failedStep{where: st.suite.stepWhere(st.pickle, step), harness: IsHarnessError(err)}
		}
		return ctx, err
	})
	registerAPISteps(sc)
	registerWorldSteps(sc)
	registerHookSteps(sc)
	registerCloudBodySteps(sc)
	registerAssetSteps(sc)
	registerServerSteps(sc)
}

// stepExprs are the compiled step expressions by their source (a
// *regexp.Regexp is safe for concurrent use).
var stepExprs sync.Map

// stepExpr returns the step expression src compiled, once per process:
// godog compiles a string expression again for every scenario, which was a
// tenth of a run's CPU. (Registering through a wrapper instead would give
// every step the wrapper's file and line in the reports.)
func stepExpr(src string) *regexp.Regexp {
	re, ok := stepExprs.Load(src)
	if !ok {
		re, _ = stepExprs.LoadOrStore(src, regexp.MustCompile(src))
	}
	return re.(*regexp.Regexp)
}
