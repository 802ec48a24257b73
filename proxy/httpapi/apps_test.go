package httpapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/proxy/store"
)

// APP-LIST-1.
func TestListApps(t *testing.T) {
	e := newEnv(t)
	if code, body := e.do("GET", "/v1/dependent-apps", ""); code != 200 || body != "[]" {
		t.Fatalf("no apps: got %d %s, want 200 []", code, body)
	}
	e.applyTarget(map[int64]map[string]string{
		1: {"K": "v"}, // downloaded
		2: nil,        // downloaded, empty config
		3: nil,        // still downloading
	}, nil, nil)
	e.setCurrent(1, "c1")
	e.setCurrent(2, "c2")
	code, body := e.do("GET", "/v1/dependent-apps", "")
	want := `[{"id":1,"name":"app1","commit":"c1","config":{"K":"v"}},{"id":2,"name":"app2","commit":"c2","config":{}}]`
	if code != 200 || body != want {
		t.Fatalf("got %d %s, want 200 %s", code, body, want)
	}

	t.Run("an app whose new release is downloading shows its previous commit", func(t *testing.T) {
		// App 1's target moves on; its current commit stays c1 until the
		// new image is downloaded.
		e.applyRaw(store.Target{Apps: []store.TargetApp{
			{ID: 1, Name: "app1", Config: map[string]string{"K": "v"}, Commit: "c1-new", Image: "reg/app1@sha256:11"},
			{ID: 2, Name: "app2", Commit: "c2", Image: "reg/app2@sha256:00"},
			{ID: 3, Name: "app3", Commit: "c3", Image: "reg/app3@sha256:00"},
		}})
		code, body := e.do("GET", "/v1/dependent-apps", "")
		if code != 200 || body != want {
			t.Fatalf("got %d %s, want 200 %s", code, body, want)
		}
	})
}

// APP-ASSET-1, APP-ASSET-2.
func TestAssets(t *testing.T) {
	e := newEnv(t)
	e.applyTarget(map[int64]map[string]string{1: nil, 2: nil}, nil, nil)
	e.setCurrent(1, "c1")
	for _, tc := range []struct {
		name     string
		path     string
		wantCode int
		wantBody string
	}{
		{"the current commit is served by the asset cache", "/v1/dependent-apps/1/assets/c1", 200, fakeTar},
		{"another commit is not found", "/v1/dependent-apps/1/assets/c0", 404, api.ErrTextNotFound},
		{"a garbage commit is not found", "/v1/dependent-apps/1/assets/..%2F..%2Fetc", 404, api.ErrTextNotFound},
		{"an app without a downloaded commit is not found", "/v1/dependent-apps/2/assets/c2", 404, api.ErrTextNotFound},
		{"an unknown app is not found", "/v1/dependent-apps/9/assets/c1", 404, api.ErrTextNotFound},
		{"a non-numeric app id is not found", "/v1/dependent-apps/x/assets/c1", 404, api.ErrTextNotFound},
		{"a negative app id is not found", "/v1/dependent-apps/-1/assets/c1", 404, api.ErrTextNotFound},
		{"an app id with a plus sign is not found", "/v1/dependent-apps/+1/assets/c1", 404, api.ErrTextNotFound},
		{"an app id with a leading zero is not found", "/v1/dependent-apps/01/assets/c1", 404, api.ErrTextNotFound},
		{"a zero app id is not found", "/v1/dependent-apps/0/assets/c1", 404, api.ErrTextNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.do("GET", tc.path, "")
			if code != tc.wantCode || body != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	if got, want := fmt.Sprint(e.assets.Calls()), "[1/c1/reg/app1@sha256:00]"; got != want {
		t.Errorf("asset cache calls = %s, want %s (only the current commit, with its image)", got, want)
	}

	t.Run("an app removed from the target is not found", func(t *testing.T) {
		e.applyTarget(map[int64]map[string]string{2: nil}, nil, nil)
		code, body := e.do("GET", "/v1/dependent-apps/1/assets/c1", "")
		if code != http.StatusNotFound || body != api.ErrTextNotFound {
			t.Fatalf("got %d %q, want 404", code, body)
		}
		if code, body := e.do("GET", "/v1/dependent-apps", ""); body != "[]" {
			t.Fatalf("list: got %d %s, want []", code, body)
		}
	})
}
