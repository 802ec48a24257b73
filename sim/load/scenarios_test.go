package load

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/depharness/depharness/sim/client"
)

func TestParseScenariosAcceptsNamesListsAndAll(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "rollout", want: []string{"rollout"}},
		{in: "env, logs", want: []string{"env", "logs"}},
		{in: "all", want: Scenarios},
		{in: "churn,all", wantErr: "churn can run once"},
		{in: "rollout,all", want: append([]string{"rollout"}, Scenarios...)},
		{in: "deploy", wantErr: `unknown scenario "deploy"`},
		{in: "", wantErr: `unknown scenario ""`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseScenarios(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestProgressWritesPlainLinesOffATerminal(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b)
	p.Every = time.Hour
	p.Show("rollout", 10, 100, time.Second)
	p.Show("rollout", 20, 100, 2*time.Second) // within Every: not written
	p.Done("rollout", 100, 3*time.Second)
	p.Fail("delete", 9, 10, 4*time.Second, "did not converge")
	want := "rollout: 10/100 devices converged (1.0s)\n" +
		"rollout: all 100 devices converged in 3.0s\n" +
		"delete: 9/10 devices converged in 4.0s: did not converge\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	var nilProgress *Progress
	nilProgress.Show("x", 1, 2, time.Second) // a nil Progress shows nothing
}

func TestAPhaseCountsUnexpectedAnswersToItsSamplingAsErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/devices/deleted":
			http.Error(w, "Device not found", http.StatusNotFound)
		default:
			http.Error(w, "database is locked", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(srv.Close)
	h := &Harness{
		opts: Options{Logger: slog.New(slog.DiscardHandler)}, log: slog.New(slog.DiscardHandler),
		api: &APIRecorder{}, probeAPI: &APIRecorder{}, hooks: &HookRecorder{},
		metrics: prometheus.NewRegistry(), prevGW: map[string]float64{},
	}
	c, err := client.New(client.Options{BaseURL: srv.URL, HTTPClient: &http.Client{Transport: h.probeAPI}})
	if err != nil {
		t.Fatal(err)
	}
	p := h.newPhase(ScenarioDelete, "test", nil)
	p.expected = map[string]bool{"GET /v1/devices/{uuid} 404": true}
	ctx := context.Background()
	if _, err := c.Device(ctx, "deleted"); !client.IsNotFound(err) {
		t.Fatalf("got %v, want 404", err)
	}
	if _, err := c.Device(ctx, "other"); client.StatusCode(err) != http.StatusInternalServerError {
		t.Fatalf("got %v, want 500", err)
	}
	r := p.finish()
	if got := r.Errors["probe GET /v1/devices/{uuid} 500"]; got != 1 || len(r.Errors) != 1 {
		t.Errorf("errors = %v, want the 500 once and the expected 404 not at all", r.Errors)
	}
	if got := r.ProbeRequests["GET /v1/devices/{uuid}"].Count; got != 2 {
		t.Errorf("timed %d sampling requests, want 2", got)
	}
}
