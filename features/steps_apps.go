package features

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"

	"github.com/cucumber/godog"
	"github.com/gavv/httpexpect/v2"
)

// Steps on the dependent apps list (GET /v1/dependent-apps).

func (st *scenario) appsList(e *httpexpect.Expect) *httpexpect.Array {
	return st.authed(e.GET("/v1/dependent-apps")).Expect().Status(http.StatusOK).JSON().Array()
}

func eventuallyListsRelease(ctx context.Context, release, appName string) error {
	st, r, err := releaseOf(ctx, release, appName)
	if err != nil {
		return err
	}
	return st.eventually(ctx, func(e *httpexpect.Expect, fail failFunc) {
		arr := st.appsList(e)
		found := false
		for _, v := range arr.Raw() {
			if m, ok := v.(map[string]any); ok && m["id"] == float64(r.app.id) && m["commit"] == r.commit {
				found = true
			}
		}
		if !found {
			fail("GET /v1/dependent-apps: got %v, want app %d at commit %s", arr.Raw(), r.app.id, r.commit)
		}
	})
}

func appsListIs(ctx context.Context, t *godog.Table) error {
	st := scenarioOf(ctx)
	var want []any
	for i, row := range t.Rows {
		if i == 0 {
			continue
		}
		a, err := st.app(row.Cells[0].Value)
		if err != nil {
			return err
		}
		r, err := st.release(row.Cells[1].Value)
		if err != nil {
			return err
		}
		cfg, err := st.decodeJSON(row.Cells[2].Value)
		if err != nil {
			return err
		}
		want = append(want, map[string]any{"id": a.id, "name": a.name, "commit": r.commit, "config": cfg})
	}
	arr := st.appsList(st.api())
	if st.rep.err() != nil {
		return nil
	}
	// App objects may carry additional fields (CONTRACT.md "Latitude"):
	// each is judged on the four fields of APP-LIST-1.
	var got []any
	for _, v := range arr.Raw() {
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("GET /v1/dependent-apps: element %v is not an object", v)
		}
		p := map[string]any{}
		for _, k := range []string{"id", "name", "commit", "config"} {
			if x, ok := m[k]; ok {
				p[k] = x
			}
		}
		got = append(got, p)
	}
	wantJSON, _ := json.Marshal(want)
	var wantNorm []any
	_ = json.Unmarshal(wantJSON, &wantNorm)
	if !sameElements(got, wantNorm) {
		gotJSON, _ := json.Marshal(got)
		return fmt.Errorf("GET /v1/dependent-apps (their id, name, commit and config): got %s, want exactly %s in any order", gotJSON, wantJSON)
	}
	return nil
}

// sameElements reports whether a and b hold the same elements, any order.
func sameElements(a, b []any) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
next:
	for _, x := range a {
		for i, y := range b {
			if !used[i] && reflect.DeepEqual(x, y) {
				used[i] = true
				continue next
			}
		}
		return false
	}
	return true
}
