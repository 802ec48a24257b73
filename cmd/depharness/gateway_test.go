package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/sim/supervisortest"
)

func TestGatewayRefusesBadFlags(t *testing.T) {
	badProfile := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(badProfile, []byte(`{"count": 2, "flashSpeed": "fast"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"a policy other than 200 or 202 is refused", []string{"--policy", "201"}, "--policy"},
		{"a negative device count is refused", []string{"--devices", "-5"}, "--devices"},
		{"an app id that is not a number is refused", []string{"--app", "13015,edge"}, "--app"},
		{"a profile with an unknown field is refused", []string{"--profile", badProfile}, "unknown field"},
		{"a missing profile is refused", []string{"--profile", filepath.Join(t.TempDir(), "none.json")}, "--profile"},
		{"a supervisor address without scheme is refused", []string{"--supervisor-address", "127.0.0.1:48484"}, "--supervisor-address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr syncBuffer
			env := &cliEnv{stdout: &syncBuffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
			args := append([]string{"gateway", "--listen", "127.0.0.1:0"}, tc.args...)
			if code := runMain(context.Background(), env, args); code != 2 {
				t.Errorf("got exit code %d, want 2 (stderr: %s)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("got stderr %q, want it to mention %q", stderr.String(), tc.want)
			}
		})
	}
}

func TestGatewayProvisionsTheFleetAndStopsOnCancel(t *testing.T) {
	sup := supervisortest.New("k")
	sup.SetApp(13015, "edgeApp1", "c1", nil)
	srv := httptest.NewServer(sup.Handler())
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	env := &cliEnv{stdout: &syncBuffer{}, stderr: &stderr, getenv: func(k string) string {
		return map[string]string{"BALENA_SUPERVISOR_ADDRESS": srv.URL, "BALENA_SUPERVISOR_API_KEY": "k", "GATEWAY_DEVICES": "3"}[k]
	}}
	done := make(chan int, 1)
	go func() {
		done <- runMain(ctx, env, []string{"gateway", "--listen", "127.0.0.1:0", "--app", "13015", "--seed", "7"})
	}()

	actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer acancel()
	err := sup.Await(actx, func(s *supervisortest.Server) bool {
		ds := s.Devices()
		if len(ds) != 3 {
			return false
		}
		for _, d := range ds {
			if d.AppID != 13015 || d.Status != "Idle" || d.IsOnline == nil || !*d.IsOnline {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("got devices %+v, want 3 of app 13015 reported Idle and online: %v\n%s", sup.Devices(), err, stderr.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("got exit code %d, want 0 after a graceful shutdown\n%s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop within 10s of cancel")
	}
	if !strings.Contains(stderr.String(), "seed=7") {
		t.Errorf("got log %q, want the seed logged", stderr.String())
	}
}

func TestGatewayExitsWithAnErrorForARefusedApp(t *testing.T) {
	sup := supervisortest.New("k")
	srv := httptest.NewServer(sup.Handler())
	t.Cleanup(srv.Close)
	var stderr syncBuffer
	env := &cliEnv{stdout: &syncBuffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code := runMain(ctx, env, []string{"gateway", "--supervisor-address", srv.URL, "--api-key", "k", "--listen", "127.0.0.1:0", "--app", "99", "--devices", "1"})
	if code != 1 {
		t.Errorf("got exit code %d, want 1\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "Provisioning failed") {
		t.Errorf("got stderr %q, want the supervisor's refusal", stderr.String())
	}
}

func TestParseExpectedChecksums(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"13015/c1": "`+strings.Repeat("a", 64)+`"}`), 0o600)
	fn, err := loadExpectedChecksums(good)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fn(13015, "c1"); !ok || v != strings.Repeat("a", 64) {
		t.Errorf("got %q %v, want the file's checksum", v, ok)
	}
	if _, ok := fn(13015, "c2"); ok {
		t.Error("got a checksum for an unlisted commit, want none")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"c1": "x"}`), 0o600)
	if _, err := loadExpectedChecksums(bad); err == nil {
		t.Error("got no error for a key without app id, want one")
	}
}
