package cloudclient

import (
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
		got, err := sd.decode(strings.NewReader(b.String()), maxStateBytes)
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
	if _, err := sd.decode(strings.NewReader(`{"dependent":{"devices":{"u":{"name":5}}}}`), maxStateBytes); err == nil {
		t.Error("a device whose name is a number decoded, want an error")
	}
	if st, err := sd.decode(strings.NewReader(`{"dependent":{"devices":null}}`), maxStateBytes); err != nil || st.Dependent.Devices != nil {
		t.Errorf("devices null: %+v, %v; want nil devices", st, err)
	}
}
