package latitude

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("reshaped body %s is not JSON: %v", b, err)
	}
	return v
}

func TestReshapeKeepsTheValueAndChangesOnlyTheForm(t *testing.T) {
	in := []byte(`{"appId":7,"commit":"c1","config":{"A":"1","B":"2"},"environment":{},"big":12345678901234567890}`)
	out, err := Reshape(in, false, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(decode(t, out), decode(t, in)) {
		t.Errorf("pretty body %s holds another value than %s", out, in)
	}
	if !strings.Contains(string(out), "\n  ") || strings.Index(string(out), `"environment"`) > strings.Index(string(out), `"appId"`) {
		t.Errorf("pretty body %s: want it indented, keys in reverse order", out)
	}
	if !strings.Contains(string(out), "12345678901234567890") {
		t.Errorf("pretty body %s lost the big number's digits", out)
	}
}

func TestReshapeAddsFieldsToTopLevelObjectsOnly(t *testing.T) {
	in := []byte(`[{"id":1,"config":{}},{"id":2,"config":{"K":"v"}}]`)
	out, err := Reshape(in, true, false)
	if err != nil {
		t.Fatal(err)
	}
	arr := decode(t, out).([]any)
	for i, e := range arr {
		m := e.(map[string]any)
		for k := range ExtraFields {
			if _, ok := m[k]; !ok {
				t.Errorf("element %d = %v, want the extra field %q", i, m, k)
			}
		}
		if cfg := m["config"].(map[string]any); len(cfg) > i {
			t.Errorf("element %d: config %v was given fields", i, cfg)
		}
	}
	if same, _ := Reshape(in, false, false); string(same) != string(in) {
		t.Errorf("Reshape without either changed %s to %s", in, same)
	}
}
