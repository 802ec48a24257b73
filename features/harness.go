package features

import "errors"

// HarnessError marks a failure of the harness or of a scenario's
// arrangement rather than a verdict on the target: the target did not
// start or become ready, a fake refused a control call, the scenario names
// an alias it never set up, the world could not be built. A scenario that
// fails with one proves nothing about a clause; the self-check counts a
// violation as caught only when a scenario fails at an assertion.
type HarnessError struct{ Err error }

func (e *HarnessError) Error() string { return e.Err.Error() }
func (e *HarnessError) Unwrap() error { return e.Err }

// arrange marks err (nil stays nil) as a HarnessError.
func arrange(err error) error {
	if err == nil || IsHarnessError(err) {
		return err
	}
	return &HarnessError{Err: err}
}

// IsHarnessError reports whether err is, or wraps, a HarnessError.
func IsHarnessError(err error) bool {
	var he *HarnessError
	return errors.As(err, &he)
}
