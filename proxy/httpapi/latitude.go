package httpapi

import (
	"bytes"
	"mime"
	"net/http"
	"strconv"

	"github.com/depharness/depharness/internal/httpserver"
	"github.com/depharness/depharness/proxy/internal/latitude"
)

// reshapeWriter holds back a JSON answer and sends it reshaped by the
// allowances extra-fields and pretty-json (proxy/internal/latitude); any
// other answer passes through untouched. Used only when one of them is on.
type reshapeWriter struct {
	http.ResponseWriter
	extra, pretty bool

	json   bool
	status int
	buf    bytes.Buffer
}

func (w *reshapeWriter) WriteHeader(code int) {
	if w.status != 0 || w.json {
		return
	}
	mt, _, _ := mime.ParseMediaType(w.Header().Get("Content-Type"))
	if mt == "application/json" {
		w.json, w.status = true, code
		return
	}
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *reshapeWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.json {
		return w.buf.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

func (w *reshapeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// flush sends a held-back JSON answer, reshaped (as it was if it cannot be).
func (w *reshapeWriter) flush() {
	if rec, ok := w.ResponseWriter.(*httpserver.StatusRecorder); !w.json || ok && rec.Written() {
		return // not JSON, or an error answer was written instead
	}
	body := w.buf.Bytes()
	if b, err := latitude.Reshape(body, w.extra, w.pretty); err == nil {
		body = b
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.ResponseWriter.WriteHeader(w.status)
	w.ResponseWriter.Write(body)
}
