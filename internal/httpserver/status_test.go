package httpserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStatusRecorderRemembersTheFirstStatusWritten(t *testing.T) {
	tests := []struct {
		name        string
		write       func(w http.ResponseWriter)
		wantStatus  int
		wantWritten bool
	}{
		{"nothing written is 200, unwritten", func(http.ResponseWriter) {}, 200, false},
		{"a status alone", func(w http.ResponseWriter) { w.WriteHeader(404) }, 404, true},
		{"a body alone is 200", func(w http.ResponseWriter) { w.Write([]byte("x")) }, 200, true},
		{"the first of two statuses", func(w http.ResponseWriter) { w.WriteHeader(503); w.WriteHeader(200) }, 503, true},
		{"a body copied through ReadFrom is 200", func(w http.ResponseWriter) {
			w.(*StatusRecorder).ReadFrom(strings.NewReader("tar"))
		}, 200, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			w := &StatusRecorder{ResponseWriter: rec}
			tt.write(w)
			if w.Status() != tt.wantStatus || w.Written() != tt.wantWritten {
				t.Errorf("Status, Written = %d, %v; want %d, %v", w.Status(), w.Written(), tt.wantStatus, tt.wantWritten)
			}
			if tt.wantWritten && rec.Code != tt.wantStatus {
				t.Errorf("the wrapped writer got %d, want %d", rec.Code, tt.wantStatus)
			}
			if w.Unwrap() != http.ResponseWriter(rec) {
				t.Error("Unwrap does not return the wrapped writer")
			}
		})
	}
}
