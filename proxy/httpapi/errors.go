package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/httpserver"
)

// Error is the one error type of the API: the status and the plain-text body
// the client sees, and the internal cause, which is logged and never sent.
type Error struct {
	Status int
	Text   string
	Cause  error
}

func (e *Error) Error() string {
	if e.Cause == nil {
		return fmt.Sprintf("%d %s", e.Status, e.Text)
	}
	return fmt.Sprintf("%d %s: %v", e.Status, e.Text, e.Cause)
}

func (e *Error) Unwrap() error { return e.Cause }

// errorf returns an *Error with status and text.
func errorf(status int, text string) *Error { return &Error{Status: status, Text: text} }

// The fixed errors of the contract (ERR-2 texts from api).
var (
	errUnauthorized   = errorf(http.StatusUnauthorized, api.ErrTextUnauthorized)
	errNotFound       = errorf(http.StatusNotFound, api.ErrTextNotFound)
	errDeviceNotFound = errorf(http.StatusNotFound, api.ErrTextDeviceNotFound)
	errDeviceDeleted  = errorf(http.StatusGone, api.ErrTextDeviceDeleted)
	errMalformedJSON  = errorf(http.StatusBadRequest, api.ErrTextMalformedJSON)
	errBodyTooLarge   = errorf(http.StatusRequestEntityTooLarge, api.ErrTextBodyTooLarge)
	errAppIDInvalid   = errorf(http.StatusBadRequest, api.ErrTextAppIDInvalid)
	errProvisioning   = errorf(http.StatusBadRequest, api.ErrTextProvisioningFailed)
	errNoAttributes   = errorf(http.StatusBadRequest, api.ErrTextNoAttributes)
	errIsOnline       = errorf(http.StatusBadRequest, api.ErrTextIsOnlineInvalid)
	errStatus         = errorf(http.StatusBadRequest, api.ErrTextStatusInvalid)
	errCommit         = errorf(http.StatusBadRequest, api.ErrTextCommitInvalid)
	errEnvironment    = errorf(http.StatusBadRequest, api.ErrTextEnvironmentInvalid)
	errConfig         = errorf(http.StatusBadRequest, api.ErrTextConfigInvalid)
	errMessage        = errorf(http.StatusBadRequest, api.ErrTextMessageInvalid)
	errTimestamp      = errorf(http.StatusBadRequest, api.ErrTextTimestampInvalid)
	errIsSystem       = errorf(http.StatusBadRequest, api.ErrTextIsSystemInvalid)
	// errDeviceType has no text in the contract; it follows the others' form.
	errDeviceType = errorf(http.StatusBadRequest, "device_type must be a non-empty string")
)

// unavailable wraps an unexpected failure: 503, never 500 (ERR-1).
func unavailable(cause error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Text: api.ErrTextServiceUnavailable, Cause: cause}
}

// writeError is the one writer of error responses. An *Error is sent as its
// status and text; any other error is an unexpected failure: 503. The cause
// is logged (with the path only: the query may hold the key), never sent. If
// the handler already started its response, nothing more can be sent.
func (h *Handler) writeError(w *httpserver.StatusRecorder, r *http.Request, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = unavailable(err)
	}
	if e.Status >= 500 && h.v.On("error-500") {
		e = &Error{Status: http.StatusInternalServerError, Text: "Internal server error", Cause: e.Cause}
	}
	if e == errDeviceNotFound && h.v.On("error-text-device-not-found") {
		e = errorf(e.Status, strings.ToLower(e.Text))
	}
	if h.v.On("error-body-empty") {
		e = &Error{Status: e.Status, Cause: e.Cause}
	}
	if h.v.Allows("other-texts") {
		// Another plain-text message for every error, as another compliant
		// supervisor may word it (ERR-2 is reference tier).
		e = &Error{Status: e.Status, Text: fmt.Sprintf("error %d: %s", e.Status, strings.ToLower(http.StatusText(e.Status))), Cause: e.Cause}
	}
	switch {
	case e.Status >= 500:
		h.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", e.Cause)
	case e.Cause != nil:
		h.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", e.Status, "err", e.Cause)
	}
	if w.Written() {
		return
	}
	hdr := w.Header()
	for _, k := range []string{"Content-Encoding", "Content-Disposition", "ETag", "Last-Modified", "Accept-Ranges", "Content-Range"} {
		hdr.Del(k)
	}
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(len(e.Text)))
	if e.Status == http.StatusUnauthorized {
		hdr.Set("WWW-Authenticate", `Bearer realm="supervisor"`)
	}
	w.WriteHeader(e.Status)
	io.WriteString(w, e.Text)
}

func statusLabel(code int) string { return strconv.Itoa(code) }
