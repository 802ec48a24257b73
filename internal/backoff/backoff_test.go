package backoff

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestJitteredDoublesUpToTheCapWithinHalfToWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		n    int
		want time.Duration // before jitter
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {40, time.Second}} {
		for range 100 {
			got := Jittered(100*time.Millisecond, time.Second, tc.n, r)
			if got < tc.want/2 || got > tc.want {
				t.Fatalf("Jittered(100ms, 1s, %d) = %v, want within [%v, %v]", tc.n, got, tc.want/2, tc.want)
			}
		}
	}
	if got := Jittered(0, time.Second, 3, r); got != 0 {
		t.Errorf("Jittered with a zero base = %v, want 0", got)
	}
}
