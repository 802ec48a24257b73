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
// device in several of them: times are kept as nanoseconds, a key that is
// 32 lowercase hex digits (a uuid as the reference proxy makes them) as its
// 16 bytes, and any other key as a copy, so that an entry never keeps the
// request it came from.
type firstTimes struct {
	mu    sync.Mutex
	hex   map[[16]byte]int64
	other map[string]int64
}

// hexKey is key's 16 bytes if it is 32 lowercase hex digits.
func hexKey(key string) (k [16]byte, ok bool) {
	if len(key) != 32 {
		return k, false
	}
	for i := range 16 {
		hi, lo := hexDigit(key[2*i]), hexDigit(key[2*i+1])
		if hi < 0 || lo < 0 {
			return k, false
		}
		k[i] = byte(hi<<4 | lo)
	}
	return k, true
}

// hexDigit is c's value as a lowercase hex digit, -1 if it is none.
func hexDigit(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

func (f *firstTimes) note(key string, t time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if k, ok := hexKey(key); ok {
		if f.hex == nil {
			f.hex = map[[16]byte]int64{}
		}
		if _, ok := f.hex[k]; !ok {
			f.hex[k] = t.UnixNano()
		}
		return
	}
	if f.other == nil {
		f.other = map[string]int64{}
	}
	if _, ok := f.other[key]; !ok {
		f.other[strings.Clone(key)] = t.UnixNano()
	}
}

func (f *firstTimes) get(key string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.lookupLocked(key)
	return time.Unix(0, t), ok
}

func (f *firstTimes) lookupLocked(key string) (int64, bool) {
	if k, ok := hexKey(key); ok {
		t, ok := f.hex[k]
		return t, ok
	}
	t, ok := f.other[key]
	return t, ok
}

func (f *firstTimes) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lenLocked()
}

func (f *firstTimes) lenLocked() int { return len(f.hex) + len(f.other) }

// intervals returns, for every key in both from and to, its time in to less
// its time in from, when that is not negative. from may be to.
func intervals(from, to *firstTimes) []time.Duration {
	from.mu.Lock()
	defer from.mu.Unlock()
	if from != to {
		to.mu.Lock()
		defer to.mu.Unlock()
	}
	ds := make([]time.Duration, 0, to.lenLocked())
	for k, t := range to.hex {
		if f, ok := from.hex[k]; ok && t >= f {
			ds = append(ds, time.Duration(t-f))
		}
	}
	for k, t := range to.other {
		if f, ok := from.other[k]; ok && t >= f {
			ds = append(ds, time.Duration(t-f))
		}
	}
	return ds
}

// after returns, for every key of f with a time after start, how long after.
func (f *firstTimes) after(start time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := start.UnixNano()
	ds := make([]time.Duration, 0, f.lenLocked())
	for _, t := range f.other {
		if t > s {
			ds = append(ds, time.Duration(t-s))
		}
	}
	for _, t := range f.hex {
		if t > s {
			ds = append(ds, time.Duration(t-s))
		}
	}
	return ds
}
