package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHealthcheckExitCodes(t *testing.T) {
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("OK")) })
	mux.HandleFunc("GET /down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"a 200 answer is healthy", []string{"--url", srv.URL + "/ping"}, nil, 0},
		{"the URL can come from HEALTHCHECK_URL", nil, map[string]string{"HEALTHCHECK_URL": srv.URL + "/ping"}, 0},
		{"a 503 answer is unhealthy", []string{"--url", srv.URL + "/down"}, nil, 1},
		{"a 404 answer is unhealthy", []string{"--url", srv.URL + "/nothing"}, nil, 1},
		{"a refused connection is unhealthy", []string{"--url", closedURL + "/ping"}, nil, 1},
		{"an answer slower than the timeout is unhealthy", []string{"--url", srv.URL + "/slow", "--timeout", "50ms"}, nil, 1},
		{"a missing URL is a usage error", nil, nil, 2},
		{"a URL without a scheme is a usage error", []string{"--url", "127.0.0.1:1/ping"}, nil, 2},
		{"a non-positive timeout is a usage error", []string{"--url", srv.URL + "/ping", "--timeout", "0s"}, nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			env := &cliEnv{stdout: &out, stderr: &errOut, getenv: func(k string) string { return tt.env[k] }}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := runMain(ctx, env, append([]string{"healthcheck"}, tt.args...))
			if got != tt.want {
				t.Errorf("exit code: got %d, want %d (stderr %q)", got, tt.want, errOut.String())
			}
		})
	}
}
