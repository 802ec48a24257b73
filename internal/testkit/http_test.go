package testkit

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestNewRequestAndDoSendTheHeadersAndReadTheWholeAnswer(t *testing.T) {
	srv := Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, r.Method+" "+r.Header.Get("X-A")+" "+r.Header.Get("X-B")+" "+string(b))
	}))
	req := NewRequest(t, "PUT", srv.URL, strings.NewReader("body"), "X-A", "1", "X-B", "2")
	resp, b := Do(t, srv.Client(), req)
	if resp.StatusCode != http.StatusTeapot || string(b) != "PUT 1 2 body" {
		t.Errorf("got %d %q, want 418 %q", resp.StatusCode, b, "PUT 1 2 body")
	}
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewRequest(rec, "BAD METHOD", srv.URL, nil)
	}()
	<-done
	srv.Close()
	done = make(chan struct{})
	go func() {
		defer close(done)
		Do(rec, nil, NewRequest(t, "GET", srv.URL, nil))
	}()
	<-done
	if m := rec.messages(); strings.Count(m, "\n") != 1 || !strings.Contains(m, "BAD METHOD") || !strings.Contains(m, "GET "+srv.URL) {
		t.Errorf("reported %q, want the bad method and the refused GET", m)
	}
}

func TestServerIsClosedWhenTheTestEnds(t *testing.T) {
	var url string
	t.Run("serving", func(t *testing.T) {
		srv := Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		url = srv.URL
		if resp, _ := Do(t, nil, NewRequest(t, "GET", url, nil)); resp.StatusCode != http.StatusOK {
			t.Errorf("GET: got %d, want 200", resp.StatusCode)
		}
	})
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Error("the server still answers after its test ended")
	}
}

func TestRawStatusSendsTheRequestAsWritten(t *testing.T) {
	srv := Server(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "DELETE" || r.RequestURI != "/a//b?c" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	if got := RawStatus(t, srv.Listener.Addr().String(), "DELETE /a//b?c HTTP/1.1\r\nHost: x\r\n\r\n"); got != http.StatusNoContent {
		t.Errorf("DELETE /a//b?c: got %d, want the handler's 204", got)
	}
}
