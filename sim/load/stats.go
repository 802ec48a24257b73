package load

import (
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Percentiles summarize a set of durations, in milliseconds (JSON numbers a
// reader can plot without parsing Go durations).
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize returns the percentiles of ds (nearest rank); zero for none.
// ds is sorted in place.
func Summarize(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	rank := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		i = min(max(i, 0), len(ds)-1)
		return ms(ds[i])
	}
	return Percentiles{Count: len(ds), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Latencies collects durations by name. It is safe for concurrent use.
type Latencies struct {
	mu sync.Mutex
	m  map[string][]time.Duration
}

// Add records d under name.
func (l *Latencies) Add(name string, d time.Duration) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string][]time.Duration{}
	}
	l.m[name] = append(l.m[name], d)
	l.mu.Unlock()
}

// AddAll records ds under name.
func (l *Latencies) AddAll(name string, ds []time.Duration) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string][]time.Duration{}
	}
	l.m[name] = append(l.m[name], ds...)
	l.mu.Unlock()
}

// Take returns the percentiles of every name and forgets the durations.
func (l *Latencies) Take() map[string]Percentiles {
	out, _ := l.take(false)
	return out
}

// TakeAll is Take, and also returns the percentiles of every duration
// whatever its name.
func (l *Latencies) TakeAll() (map[string]Percentiles, Percentiles) {
	return l.take(true)
}

func (l *Latencies) take(all bool) (map[string]Percentiles, Percentiles) {
	l.mu.Lock()
	m := l.m
	l.m = nil
	l.mu.Unlock()
	out := make(map[string]Percentiles, len(m))
	var every []time.Duration
	for k, ds := range m {
		if all {
			every = append(every, ds...)
		}
		out[k] = Summarize(ds)
	}
	return out, Summarize(every)
}

// Counts counts events by name. It is safe for concurrent use.
type Counts struct {
	mu sync.Mutex
	m  map[string]int64
}

// Add adds n to name.
func (c *Counts) Add(name string, n int64) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[name] += n
	c.mu.Unlock()
}

// Take returns the counts and resets them.
func (c *Counts) Take() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.m
	c.m = nil
	if m == nil {
		m = map[string]int64{}
	}
	return m
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// firstTimes keeps, per key, the first time something happened after a
// mark. It is safe for concurrent use. A large fleet has an entry per
// device in several of them: times are kept as nanoseconds, and keys are
// copied so that an entry does not keep the request it came from.
type firstTimes struct {
	mu sync.Mutex
	m  map[string]int64
}

func (f *firstTimes) note(key string, t time.Time) {
	f.mu.Lock()
	if f.m == nil {
		f.m = map[string]int64{}
	}
	if _, ok := f.m[key]; !ok {
		f.m[strings.Clone(key)] = t.UnixNano()
	}
	f.mu.Unlock()
}

func (f *firstTimes) get(key string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.m[key]
	return time.Unix(0, t), ok
}

func (f *firstTimes) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}
