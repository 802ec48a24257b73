package load

import (
	"slices"
	"strings"
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

// firstTimes keeps the first time of each key, whether the key is a uuid
// of 32 lowercase hex digits (kept as bytes) or anything else (kept as a
// copy): keys that differ only in case stay apart, and latencies pair the
// same key's times.
func TestFirstTimesKeepsTheFirstTimeOfEveryKindOfKey(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const hexUUID = "0123456789abcdef0123456789abcdef"
	upper := strings.ToUpper(hexUUID)
	keys := []string{hexUUID, upper, "d1", "0123456789abcdef0123456789abcdeg", hexUUID + "0"}
	var from, to firstTimes
	for i, k := range keys {
		from.note(k, at(10*i))
		from.note(k, at(500)) // not the first: ignored
		to.note(k, at(10*i+i+1))
	}
	to.note("only-in-to", at(1))
	if n := from.len(); n != len(keys) {
		t.Fatalf("from holds %d keys, want %d", n, len(keys))
	}
	for i, k := range keys {
		if got, ok := from.get(k); !ok || !got.Equal(at(10*i)) {
			t.Errorf("get(%q) = %v, %v; want %v", k, got, ok, at(10*i))
		}
	}
	if _, ok := from.get("0123456789ABCDEF0123456789abcdef"); ok {
		t.Error("a key in mixed case found an entry noted in another case")
	}
	got := intervals(&from, &to)
	slices.Sort(got)
	want := []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond}
	if !slices.Equal(got, want) {
		t.Fatalf("intervals = %v, want %v", got, want)
	}
	after := to.after(at(15))
	slices.Sort(after)
	if wantAfter := []time.Duration{8 * time.Millisecond, 19 * time.Millisecond, 30 * time.Millisecond}; !slices.Equal(after, wantAfter) {
		t.Fatalf("after = %v, want %v", after, wantAfter)
	}
}
