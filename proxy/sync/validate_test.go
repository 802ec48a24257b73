package sync

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/depharness/depharness/api/cloud"
)

// The validator, fed one state after another as the cloud client hands
// them (an unchanged device with the very values decoded before, a changed
// one decoded afresh), accepts and converts each exactly as Validate does:
// devices added, changed, removed and left alone; apps removed under
// devices that did not change; malformed devices coming and going.
func TestValidatorMatchesValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	decoded := map[string]cloud.DependentDevice{}
	fresh := func(i int) cloud.DependentDevice {
		app := fmt.Sprint(1 + rng.IntN(2))
		if rng.IntN(10) == 0 {
			app = "3"
		}
		d := cloud.DependentDevice{Name: fmt.Sprint("d", rng.IntN(3)), Restart: int64(rng.IntN(3)),
			Apps: map[string]cloud.DeviceAppTarget{app: {Environment: map[string]string{"E": fmt.Sprint(rng.IntN(2))}}}}
		switch rng.IntN(300) {
		case 0:
			d.Restart = -1
		case 1:
			d.Apps["x"] = cloud.DeviceAppTarget{}
		case 2:
			d.Apps = nil
		}
		return d
	}
	var vr validator
	accepted := 0
	for round := range 400 {
		for range 1 + rng.IntN(20) {
			i := rng.IntN(60)
			u := fmt.Sprintf("%08x", i)
			if i == 59 {
				u = "bad-uuid"
			}
			switch rng.IntN(3) {
			case 0, 1:
				delete(decoded, u)
			default:
				decoded[u] = fresh(i)
			}
		}
		st := &cloud.TargetState{Dependent: cloud.Dependent{
			Apps:    map[string]cloud.DependentApp{"1": {Name: "a"}, "2": {Name: "b"}},
			Devices: maps.Clone(decoded),
		}}
		if rng.IntN(4) != 0 {
			st.Dependent.Apps["3"] = cloud.DependentApp{Name: "c"}
		}
		want, wantErr := Validate(st)
		got, err := vr.validate(st)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("round %d: error %v, want %v", round, err, wantErr)
		}
		if err == nil {
			accepted++
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round %d: validated as %+v, want %+v", round, got, want)
			}
		}
	}
	if accepted < 50 || accepted > 350 {
		t.Fatalf("%d of 400 states accepted: the test no longer mixes good and bad states", accepted)
	}
}

// A 100,000-device target state in which one device changed since the last
// poll, checked by the validator (as a poll does) and, as the floor of
// what it replaced, by Validate.
func BenchmarkValidate100k(b *testing.B) {
	st := &cloud.TargetState{Dependent: cloud.Dependent{
		Apps:    map[string]cloud.DependentApp{"7": {Name: "a"}},
		Devices: map[string]cloud.DependentDevice{},
	}}
	for i := range 100_000 {
		st.Dependent.Devices[fmt.Sprintf("%032x", i)] = cloud.DependentDevice{Name: fmt.Sprint("device-", i),
			Apps: map[string]cloud.DeviceAppTarget{"7": {Environment: map[string]string{"SLOT": "x"}}}}
	}
	change := func(i int) {
		st.Dependent.Devices[fmt.Sprintf("%032x", 0)] = cloud.DependentDevice{Name: fmt.Sprint("renamed-", i),
			Apps: map[string]cloud.DeviceAppTarget{"7": {}}}
	}
	b.Run("kept", func(b *testing.B) {
		var vr validator
		for i := 0; b.Loop(); i++ {
			change(i)
			if _, err := vr.validate(st); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("whole", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			change(i)
			if _, err := Validate(st); err != nil {
				b.Fatal(err)
			}
		}
	})
}
