package defaults

import (
	"testing"
	"time"
)

func TestPositiveReplacesZeroAndNegativeValuesOnly(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{
		{0, time.Minute},
		{-time.Second, time.Minute},
		{time.Second, time.Second},
	} {
		got := tc.in
		Positive(&got, time.Minute)
		if got != tc.want {
			t.Errorf("Positive(%v, 1m): got %v, want %v", tc.in, got, tc.want)
		}
	}
	n := 0
	Positive(&n, 16)
	f := 0.5
	Positive(&f, 0.1)
	if n != 16 || f != 0.5 {
		t.Errorf("Positive on an int and a float: got %d and %v, want 16 and 0.5", n, f)
	}
}
