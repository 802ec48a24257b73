package httpserver

import (
	"io"
	"net/http"
)

// StatusRecorder is an http.ResponseWriter that passes everything through
// to the ResponseWriter it wraps and remembers the status of the answer, for
// a middleware's metrics, logs or journal. It keeps the wrapped writer's
// io.ReaderFrom (http.ServeContent's sendfile path) and unwraps for
// http.ResponseController.
type StatusRecorder struct {
	http.ResponseWriter
	code int
}

// WriteHeader records code if it is the answer's first status.
func (w *StatusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusRecorder) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom copies src to the answer, through the wrapped writer's ReadFrom
// if it has one.
func (w *StatusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(w.ResponseWriter, src)
}

// Unwrap returns the wrapped writer.
func (w *StatusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Written reports whether a status or any of the body was written.
func (w *StatusRecorder) Written() bool { return w.code != 0 }

// Status is the answer's status: 200 if nothing was written at all (as
// net/http answers a handler that writes nothing).
func (w *StatusRecorder) Status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
