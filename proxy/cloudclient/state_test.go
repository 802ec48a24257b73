package cloudclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/depharness/depharness/api/cloud"
)

// Target states decoded with the devices kept between documents equal the
// same documents decoded whole by encoding/json, document after document
// (devices added, changed, removed, unchanged; nulls and unknown members),
// and a device that does not decode fails the state.
func TestStatesDecodeAsEncodingJSONDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var sd stateDecoder
	device := func(i int) string {
		switch rng.IntN(12) {
		case 0:
			return "null"
		case 1:
			return fmt.Sprintf(`{"name":"d%d","extra":[1,{"x":null}],"apps":{"1":{"config":null,"environment":{"A":"%d"}}}}`, i, rng.IntN(2))
		}
		return fmt.Sprintf(`{"name":"d%d","restart":%d,"apps":{"%d":{"config":{"C":"%d"},"environment":{"E":"%d"}}}}`,
			i, rng.IntN(2), 1+rng.IntN(2), rng.IntN(2), rng.IntN(3))
	}
	for doc := range 50 {
		var b strings.Builder
		b.WriteString(`{"local":{"x":1},"dependent":{"apps":{"1":{"name":"a","parentApp":2,"config":{}}},"devices":{`)
		for i := range 40 {
			if rng.IntN(5) == 0 {
				continue
			}
			if b.String()[b.Len()-1] != '{' {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"%032x":%s`, i, device(i))
		}
		b.WriteString(`}}}`)
		got, err := sd.decode(strings.NewReader(b.String()), DefaultMaxStateBytes)
		if err != nil {
			t.Fatalf("document %d: %v", doc, err)
		}
		var want cloud.TargetState
		if err := json.Unmarshal([]byte(b.String()), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Fatalf("document %d decoded as %+v, want %+v", doc, *got, want)
		}
	}
	if _, err := sd.decode(strings.NewReader(`{"dependent":{"devices":{"u":{"name":5}}}}`), DefaultMaxStateBytes); err == nil {
		t.Error("a device whose name is a number decoded, want an error")
	}
	if st, err := sd.decode(strings.NewReader(`{"dependent":{"devices":null}}`), DefaultMaxStateBytes); err != nil || st.Dependent.Devices != nil {
		t.Errorf("devices null: %+v, %v; want nil devices", st, err)
	}
}

// The document buffers are reused: a device kept from a document whose
// buffer is read into again is never compared with the bytes now there.
// Each of these documents is read into the buffer of the one two before
// it, where the same device sits at the same place with another name.
func TestStateBuffersReusedSafely(t *testing.T) {
	var sd stateDecoder
	docs := []string{
		`{"dependent":{"devices":{"u":{"name":"x0"}}}}`,
		`{"dependent":{"apps":{}}   }             }`, // no devices
		`{"dependent":{"devices":{"u":{"name":"x1"}}}}`,
		`{"dependent":{"devices":{"\u0075":{"name":"y"}}}}`, // decoded by encoding/json
		`{"dependent":{"devices":{"u":{"name":"x2"}}}}`,
		`{"dependent":{"devices":{"u":{"name":"x3"}}}}`,
		`{"dependent":{"devices":{"u":{"name":"x4"}}}}`,
	}
	for i, doc := range docs {
		got, err := sd.decode(strings.NewReader(doc), DefaultMaxStateBytes)
		want, wantErr := decodeStraight([]byte(doc))
		if err != nil || wantErr != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("document %d: %+v, %v; want %+v", i, got, err, want)
		}
	}
}

// decodeStraight decodes doc as GetState did before the scanner: one
// json.Decoder.Decode of the whole state.
func decodeStraight(doc []byte) (*cloud.TargetState, error) {
	var st cloud.TargetState
	if err := json.NewDecoder(bytes.NewReader(doc)).Decode(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Two documents decoded one after the other (the second reusing devices of
// the first) decode as json.Decoder decodes each: the same state, or an
// error for both.
func FuzzStateDecodeMatchesEncodingJSON(f *testing.F) {
	dev := `{"name":"d","restart":2,"apps":{"1":{"config":{"C":"1"},"environment":{"E":"x"}}}}`
	seeds := []string{
		`{"local":{"x":1},"dependent":{"apps":{"1":{"name":"a","parentApp":2,"config":{},"commit":"c","releaseId":3,"image":"r/x@sha256:00"}},"devices":{"u1":` + dev + `,"u2":null}}}`,
		`{"dependent":{"devices":{"u1":` + dev + `}}}  trailing`,
		`{"dependent":{"devices":{"u1":` + dev + `,"u1":{"name":"again"}}}}`,
		`{"Dependent":{"devices":{"u1":` + dev + `}}}`,
		`{"dependent":{"DEVICES":{"u1":{}}},"dependent":{"apps":{}}}`,
		`{"dependent":{"devices":{"u\u0031":{}}}}`,
		`{"dependent":{"devices":{"u1":{"name":5}}}}`,
		`{"dependent":{"devices":null,"apps":null},"local":null}`,
		`{"dependent":{"appſ":{"1":{}}}}`,
		`{"dependent":{"devices":{"\xff":{}}}}`,
		`{"x":[1,-0.5e+3,true,false,null,"\u00e9\n",{}],"dependent":{"devices":{}}}`,
		`{"x":01}`, `{"x":1.}`, `{"x":"\q"}`, "{\"x\":\"\x01\"}", `{"x":[1,]}`, `{"x":tru}`, `[]`, `null`, ``, `{`,
		`{"dependent":5}`, `{"dependent":{"devices":[]}}`, `{"local":{"a":[[[[[]]]]]}}`,
		`{"x":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`,
	}
	for i, a := range seeds {
		f.Add([]byte(a), []byte(seeds[(i+1)%len(seeds)]))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var sd stateDecoder
		// In this order each document is read into the buffer of one
		// that differs from it.
		for _, doc := range [][]byte{a, b, b, a, a, b} {
			got, err := sd.decode(bytes.NewReader(doc), DefaultMaxStateBytes)
			want, wantErr := decodeStraight(doc)
			if (err == nil) != (wantErr == nil) {
				t.Fatalf("%q: error %v, want %v", doc, err, wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, want) {
				t.Fatalf("%q decoded as %+v, want %+v", doc, *got, *want)
			}
		}
	})
}

// A state as the fake cloud renders it is walked by the scanner, not handed
// to encoding/json whole; documents it does not take still decode.
func TestScanStateTakesPlainStates(t *testing.T) {
	st := cloud.TargetState{Local: json.RawMessage(`{"name":"gw"}`), Dependent: cloud.Dependent{
		Apps:    map[string]cloud.DependentApp{"7": {Name: "a", ParentApp: 1, Config: map[string]string{"K": "v"}}},
		Devices: map[string]cloud.DependentDevice{},
	}}
	for i := range 100 {
		st.Dependent.Devices[fmt.Sprintf("%032x", i)] = cloud.DependentDevice{Name: fmt.Sprint("d", i), Restart: int64(i % 3),
			Apps: map[string]cloud.DeviceAppTarget{"7": {Config: map[string]string{"C": "1"}}}}
	}
	doc, err := json.MarshalIndent(st, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	scanned, ok := scanState(doc, nil)
	var local bytes.Buffer
	json.Compact(&local, scanned.local)
	if !ok || len(scanned.devices) != 100 || scanned.apps == nil || local.String() != `{"name":"gw"}` {
		t.Fatalf("scanState took %v: %d devices, apps %q, local %q", ok, len(scanned.devices), scanned.apps, scanned.local)
	}
	for _, odd := range []string{`{"dependent":{"devices":{"u\u0031":{}}}}`, `{"Local":{}}`, `{"dependent":{"devices":null}}`, `{"x":1,}`} {
		if _, ok := scanState([]byte(odd), nil); ok {
			t.Errorf("scanState took %s", odd)
		}
	}
}

// A poll of a 100,000-device target state in which one device changed:
// decoded keeping the devices (as GetState does) and, as the floor of what
// it replaced, by one json.Decoder.Decode.
func BenchmarkStateDecode100k(b *testing.B) {
	st := cloud.TargetState{Local: json.RawMessage(`{}`), Dependent: cloud.Dependent{
		Apps:    map[string]cloud.DependentApp{"7": {Name: "a", ParentApp: 1, Config: map[string]string{}}},
		Devices: map[string]cloud.DependentDevice{},
	}}
	for i := range 100_000 {
		st.Dependent.Devices[fmt.Sprintf("%032x", i)] = cloud.DependentDevice{Name: fmt.Sprint("device-", i),
			Apps: map[string]cloud.DeviceAppTarget{"7": {Config: map[string]string{}, Environment: map[string]string{"SLOT": "x"}}}}
	}
	docs := make([][]byte, 2)
	for i := range docs {
		st.Dependent.Devices[fmt.Sprintf("%032x", 0)] = cloud.DependentDevice{Name: fmt.Sprint("renamed-", i),
			Apps: map[string]cloud.DeviceAppTarget{"7": {}}}
		var err error
		if docs[i], err = json.Marshal(st); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("kept", func(b *testing.B) {
		var sd stateDecoder
		for i := 0; b.Loop(); i++ {
			if _, err := sd.decode(bytes.NewReader(docs[i%2]), DefaultMaxStateBytes); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := decodeStraight(docs[i%2]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Devices whose app targets are equal share one decoded copy; others do
// not, and nil variables stay nil.
func TestEqualAppTargetsShared(t *testing.T) {
	var sd stateDecoder
	doc := `{"dependent":{"devices":{
		"a":{"name":"a","apps":{"1":{"config":{},"environment":{"E":"x","F":"y"}}}},
		"b":{"name":"b","apps":{"1":{"config":{},"environment":{"F":"y","E":"x"}}}},
		"c":{"name":"c","apps":{"1":{"config":{},"environment":{"E":"z","F":"y"}}}},
		"d":{"name":"d","apps":{"2":{"config":{},"environment":{"E":"x","F":"y"}}}},
		"e":{"name":"e","apps":{"1":{"config":null,"environment":{"E":"x","F":"y"}}}}}}}`
	st, err := sd.decode(strings.NewReader(doc), DefaultMaxStateBytes)
	if err != nil {
		t.Fatal(err)
	}
	want, err := decodeStraight([]byte(doc))
	if err != nil || !reflect.DeepEqual(st, want) {
		t.Fatalf("decoded as %+v (%v), want %+v", st, err, want)
	}
	apps := func(u string) uintptr { return reflect.ValueOf(st.Dependent.Devices[u].Apps).Pointer() }
	env := func(u string) uintptr {
		for _, at := range st.Dependent.Devices[u].Apps {
			return reflect.ValueOf(at.Environment).Pointer()
		}
		return 0
	}
	if apps("a") != apps("b") || apps("a") == apps("c") || apps("a") == apps("d") || apps("a") == apps("e") {
		t.Errorf("apps maps shared wrongly: a %x b %x c %x d %x e %x", apps("a"), apps("b"), apps("c"), apps("d"), apps("e"))
	}
	if env("a") != env("d") || env("a") != env("e") || env("a") == env("c") {
		t.Errorf("environments shared wrongly: a %x c %x d %x e %x", env("a"), env("c"), env("d"), env("e"))
	}
	if st.Dependent.Devices["e"].Apps["1"].Config != nil {
		t.Error("a null config came out non-nil")
	}
}
