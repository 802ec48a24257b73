package assets

import (
	"context"
	"errors"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Which build failures are retried.

// notRetried is a build failure that Ensure returns again, without pulling,
// for the same app and commit (a tar over MaxBytes). Its Permanent method
// tells callers (the target sync) not to ask again until the target
// changes.
type notRetried struct{ err error }

func (e notRetried) Error() string { return e.err.Error() }

func (e notRetried) Unwrap() error { return e.err }

func (e notRetried) Permanent() bool { return true }

// permanentError marks an error that a retry cannot cure.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }

func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

// retryable reports whether a failed build attempt is worth repeating:
// registry faults and corrupt or cut transfers are; 4xx answers (but 408 and
// 429), the size limit, local file errors and cancellation are not.
func retryable(err error) bool {
	var pe permanentError
	if errors.Is(err, ErrStalled) {
		return true
	}
	if errors.As(err, &pe) || errors.Is(err, ErrTooLarge) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode >= 500 || te.StatusCode == http.StatusRequestTimeout || te.StatusCode == http.StatusTooManyRequests
	}
	return true
}
