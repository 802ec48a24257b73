package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkApplyTarget10kAllChanged applies a target in which all of 10,000
// devices have a new environment.
func BenchmarkApplyTarget10kAllChanged(b *testing.B) {
	s, _ := openTestStore(b)
	mk := func(v string) Target {
		t := Target{Apps: []TargetApp{{ID: 1, Name: "a", Commit: "c1", Image: "r@sha256:aa"}}}
		for i := 0; i < 10000; i++ {
			t.Devices = append(t.Devices, TargetDevice{UUID: fmt.Sprintf("%032x", i), AppID: 1, Environment: map[string]string{"V": v}, Cloud: cloudRec(int64(i + 1))})
		}
		return t
	}
	if _, err := s.ApplyTarget(context.Background(), mk("0"), time.Now()); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if _, err := s.ApplyTarget(context.Background(), mk(fmt.Sprint(i+1)), time.Now().Add(-time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
}
