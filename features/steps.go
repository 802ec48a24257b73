package features

import (
	"context"

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
