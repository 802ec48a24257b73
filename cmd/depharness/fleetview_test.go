package main

import (
	"encoding/json"
	"net/http"
	"regexp"
	"testing"
	"time"
)

// The gateway command serves the fleet view with --fleet-view-listen, and
// an open event stream does not hold up its shutdown.
func TestGatewayServesTheFleetView(t *testing.T) {
	_, cmd := startGatewayOnEdgeApp(t, map[string]string{"GATEWAY_FLEET_VIEW_LISTEN": "127.0.0.1:0"})
	stderr := cmd.errOut

	urlRE := regexp.MustCompile(`fleet view listening"? url=(http://\S+/)`)
	var url string
	var state struct {
		Stats struct {
			Active int
			Apps   []struct{ Name, Commit string }
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if url == "" {
			if m := urlRE.FindStringSubmatch(stderr.String()); m != nil {
				url = m[1]
			}
		}
		if url != "" {
			if resp, err := http.Get(url + "api/state"); err == nil {
				json.NewDecoder(resp.Body).Decode(&state)
				resp.Body.Close()
				if state.Stats.Active == 3 && len(state.Stats.Apps) == 1 && state.Stats.Apps[0].Name == "edgeApp1" && state.Stats.Apps[0].Commit == "c1" {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet view at %q shows %+v, want 3 devices of edgeApp1 at c1\n%s", url, state, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := http.Get(url + "events")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /events: %v %v", resp, err)
	}
	defer resp.Body.Close()
	// A fleet view stream is open: the gateway must still stop.
	if code := cmd.stop(t, 10*time.Second); code != 0 {
		t.Errorf("got exit code %d, want 0\n%s", code, stderr.String())
	}
}
