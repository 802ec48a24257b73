package cloud

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// httpError is a failed request: the status, the text the client sees, and
// an internal cause that is logged, never sent.
type httpError struct {
	status int
	msg    string
	cause  error
}

func (e *httpError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%d %s: %v", e.status, e.msg, e.cause)
	}
	return fmt.Sprintf("%d %s", e.status, e.msg)
}

// errorf returns an httpError with a formatted client message.
func errorf(status int, format string, a ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, a...)}
}

// sentinelStatuses are the control API's errors that a status of their own
// tells apart: the server answers each with it, and ControlError maps it
// back. ErrNoBuilder is answered 503, as an internal failure is.
var sentinelStatuses = []struct {
	err    error
	status int
}{
	{ErrInvalid, http.StatusBadRequest},
	{ErrNotFound, http.StatusNotFound},
	{ErrConflict, http.StatusConflict},
}

// controlError maps an error of a control method to an httpError.
func controlError(err error) *httpError {
	var he *httpError
	if errors.As(err, &he) {
		return he
	}
	for _, s := range sentinelStatuses {
		if errors.Is(err, s.err) {
			return &httpError{status: s.status, msg: err.Error()}
		}
	}
	if errors.Is(err, ErrNoBuilder) {
		return &httpError{status: http.StatusServiceUnavailable, msg: err.Error()}
	}
	return &httpError{status: http.StatusServiceUnavailable, msg: "internal failure", cause: err}
}

// writeError writes err as a plain text answer and returns its status.
func writeError(log *slog.Logger, w http.ResponseWriter, err error) int {
	he := controlError(err)
	if he.cause != nil || he.status >= 500 {
		log.Warn("request failed", "status", he.status, "err", he)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(he.status)
	fmt.Fprintln(w, he.msg)
	return he.status
}

// invalidf returns an error wrapping ErrInvalid with a formatted message.
func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// notFoundf returns an error wrapping ErrNotFound with a formatted message.
func notFoundf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, a...))
}

// conflictf returns an error wrapping ErrConflict with a formatted message.
func conflictf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, a...))
}
