package httpapi

import (
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/internal/jsonstr"
	"github.com/depharness/depharness/proxy/store"
)

func ptr[T any](v T) *T { return &v }

// The fast device encoder writes exactly the keys of api.Device.
func TestEncodedDeviceHasTheKeysOfTheWireType(t *testing.T) {
	var want []string
	rt := reflect.TypeFor[api.Device]()
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		want = append(want, name)
	}
	b, err := appendDevice(nil, &store.DeviceView{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	var got []string
	for k := range m {
		got = append(got, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("keys = %v, want %v", got, want)
	}
}

// The fast encoder and the mapping through api.Device with encoding/json
// give the same JSON value for every shape of row.
func TestEncodedDeviceEqualsTheWireTypeMapping(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    store.DeviceView
	}{
		{"a fresh device", store.DeviceView{ID: 1, UUID: "u", AppID: 2, DeviceType: "generic-amd64", CloudID: 3, Name: "n", Status: "Provisioned",
			TargetEnvironment: json.RawMessage(`{}`), TargetConfig: json.RawMessage(`{}`)}},
		{"a reported device", store.DeviceView{ID: 9, UUID: "abc", AppID: 1 << 40, DeviceType: "edge", LogsChannel: ptr("lc"), CloudID: math.MaxInt64,
			Name: "blue-sun", Status: "Idle", IsOnline: ptr(false), DownloadProgress: ptr(42.5), ReportedCommit: ptr("c1"),
			AppCurrentCommit: ptr("c2"), Environment: json.RawMessage(`{"A":"1","n":2,"o":{"x":[1,null]}}`), Config: json.RawMessage(`{}`),
			TargetEnvironment: json.RawMessage(`{"A":"1"}`), TargetConfig: json.RawMessage(`{"RESIN_SUPERVISOR_DELTA":"1"}`)}},
		{"online with tiny and huge progress", store.DeviceView{IsOnline: ptr(true), DownloadProgress: ptr(1e-9)}},
		{"huge progress", store.DeviceView{DownloadProgress: ptr(1e22)}},
		{"negative zero progress", store.DeviceView{DownloadProgress: ptr(math.Copysign(0, -1))}},
		{"strings needing escapes", store.DeviceView{UUID: "q\"b\\s/\n\r\t\b\f\x00\x1f<>&", Name: "\u2028\u2029é😀",
			Status: "bad utf8 \xff\xfe end", ReportedCommit: ptr("\x7f")}},
		{"negative ids", store.DeviceView{ID: -1, AppID: -2, CloudID: -3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertSameAsWireType(t, &tc.d)
		})
	}
}

func assertSameAsWireType(t *testing.T, d *store.DeviceView) {
	t.Helper()
	fast, err := appendDevice(nil, d, false)
	if err != nil {
		t.Fatalf("appendDevice: %v", err)
	}
	if !json.Valid(fast) {
		t.Fatalf("appendDevice wrote invalid JSON: %s", fast)
	}
	ad, err := toAPIDevice(d)
	if err != nil {
		t.Fatalf("toAPIDevice: %v", err)
	}
	slow, err := jsonstr.Marshal(ad)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	json.Unmarshal(fast, &a)
	json.Unmarshal(slow, &b)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("fast  %s\nslow  %s", fast, slow)
	}
	// Strings and numbers are written byte for byte as encoding/json would
	// (objects aside, which are stored JSON passed through).
	if d.Environment == nil && d.Config == nil && len(d.TargetEnvironment) == 0 && len(d.TargetConfig) == 0 && string(fast) != string(slow) {
		t.Errorf("bytes differ:\nfast  %s\nslow  %s", fast, slow)
	}
}

func TestEncodedDeviceRefusesADamagedStoredObject(t *testing.T) {
	for _, raw := range []string{`[1]`, `{"a":`, `"s"`} {
		if _, err := appendDevice(nil, &store.DeviceView{Environment: json.RawMessage(raw)}, false); err == nil {
			t.Errorf("environment %s: no error, want one", raw)
		}
	}
}

func TestNumericOnlineWritesZeroOne(t *testing.T) {
	for _, tc := range []struct {
		on   *bool
		want string
	}{{ptr(true), `"is_online":1`}, {ptr(false), `"is_online":0`}, {nil, `"is_online":null`}} {
		b, _ := appendDevice(nil, &store.DeviceView{IsOnline: tc.on}, true)
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%s: want %s", b, tc.want)
		}
	}
}

// FuzzAppendFloat holds the number encoder equal to encoding/json's.
func FuzzAppendFloat(f *testing.F) {
	for _, v := range []float64{0, 1, -1, 0.5, 1e-7, 1e20, 1e21, 123456789.125, math.SmallestNonzeroFloat64, math.MaxFloat64} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v float64) {
		got := appendFloatPtr(nil, &v)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			if string(got) != "null" {
				t.Fatalf("%v: got %s, want null", v, got)
			}
			return
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("appendFloat(%v) = %s, want %s", v, got, want)
		}
	})
}
