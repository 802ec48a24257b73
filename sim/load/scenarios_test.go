package load

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
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
