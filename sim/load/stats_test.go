package load

import (
	"testing"
	"time"
)

func TestSummarizeUsesNearestRankPercentiles(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		out := make([]time.Duration, len(ns))
		for i, n := range ns {
			out[i] = time.Duration(n) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[99-i] = time.Duration(i+1) * time.Millisecond // 100..1, unsorted
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Percentiles
	}{
		{"no durations give zeros", nil, Percentiles{}},
		{"one duration is every percentile", ms(7), Percentiles{Count: 1, P50: 7, P90: 7, P99: 7, Max: 7}},
		{"a hundred durations 1..100 ms give 50, 90, 99, 100", hundred, Percentiles{Count: 100, P50: 50, P90: 90, P99: 99, Max: 100}},
		{"ten durations take the ceiling rank", ms(10, 1, 9, 2, 8, 3, 7, 4, 6, 5), Percentiles{Count: 10, P50: 5, P90: 9, P99: 10, Max: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestLatenciesTakeSummarizesAndForgets(t *testing.T) {
	var l Latencies
	l.Add("a", time.Millisecond)
	l.Add("a", 3*time.Millisecond)
	l.Add("b", 1500*time.Microsecond)
	got := l.Take()
	if got["a"].Count != 2 || got["a"].Max != 3 || got["b"].P50 != 1.5 {
		t.Errorf("got %+v, want a: 2 durations up to 3 ms, b: 1.5 ms", got)
	}
	if again := l.Take(); len(again) != 0 {
		t.Errorf("second Take = %+v, want nothing", again)
	}
}
