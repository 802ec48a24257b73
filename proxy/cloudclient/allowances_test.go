package cloudclient

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/depharness/depharness/proxy/violation"
)

// extra-cloud-calls adds requests outside the contract's calls (whose 404s
// change nothing) and no-keepalive opens a connection per request; the
// state itself is fetched as without them.
func TestAllowancesExtraCloudCallsAndNoKeepalive(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	conns := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		conns[r.RemoteAddr] = true
		mu.Unlock()
		if r.URL.Path != fmt.Sprintf("/device/v2/%s/state", testUUID) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"e1"`)
		fmt.Fprint(w, `{"local":{},"dependent":{"apps":{"7":{"name":"a","parentApp":1,"config":{}}},"devices":{}}}`)
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		allow     string
		wantPaths []string
		wantConns int
	}{
		{"", []string{"/device/v2/" + testUUID + "/state"}, 1},
		{"extra-cloud-calls,no-keepalive", []string{"/device/v2/" + testUUID + "/state", "/config", "/v6/application(7)"}, 3},
	} {
		mu.Lock()
		paths, conns = nil, map[string]bool{}
		mu.Unlock()
		s, err := violation.ParseAllowances(tc.allow)
		if err != nil {
			t.Fatal(err)
		}
		c, err := New(Options{BaseURL: srv.URL, GatewayUUID: testUUID, APIKey: testKey, Violations: s})
		if err != nil {
			t.Fatal(err)
		}
		st, etag, _, err := c.GetState(context.Background(), "")
		if err != nil || etag != `"e1"` || len(st.Dependent.Apps) != 1 {
			t.Fatalf("allowances %q: GetState = %v, %q, %v; want the state", tc.allow, st, etag, err)
		}
		mu.Lock()
		got := slices.Clone(paths)
		n := len(conns)
		mu.Unlock()
		if !slices.Equal(got, tc.wantPaths) || n != tc.wantConns {
			t.Errorf("allowances %q: requests %v over %d connections, want %v over %d", tc.allow, got, n, tc.wantPaths, tc.wantConns)
		}
	}
}
