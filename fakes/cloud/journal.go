package cloud

import (
	"io"
	"sync"
)

// journal is a bounded ring of the protocol requests received, oldest
// dropped. Each entry keeps the start of its body (bodyLimit bytes); the
// bodies of all entries together stay within bodyBudget bytes, the oldest
// entries losing theirs first. Guarded by Server.mu.
type journal struct {
	limit   int
	entries []Request // ring; start is the oldest when full
	start   int
	seq     uint64

	bodyLimit  int
	bodyBudget int
	bodyBytes  int    // sum of len(Body) over the retained entries
	bodyOldest uint64 // no entry with a lower Seq holds a body
}

// addLocked appends r, giving it the next sequence number.
func (j *journal) addLocked(r Request) Request {
	j.seq++
	r.Seq = j.seq
	j.bodyBytes += len(r.Body)
	if len(j.entries) < j.limit {
		j.entries = append(j.entries, r)
	} else {
		j.bodyBytes -= len(j.entries[j.start].Body)
		j.entries[j.start] = r
		j.start = (j.start + 1) % len(j.entries)
	}
	j.trimBodiesLocked()
	return r
}

// trimBodiesLocked drops the bodies of the oldest entries until the bodies
// fit the budget (the newest entry keeps its body in any case).
func (j *journal) trimBodiesLocked() {
	n := len(j.entries)
	oldest := j.seq - uint64(n) + 1
	j.bodyOldest = max(j.bodyOldest, oldest)
	for j.bodyBytes > j.bodyBudget && j.bodyOldest < j.seq {
		e := &j.entries[(j.start+int(j.bodyOldest-oldest))%n]
		j.bodyBytes -= len(e.Body)
		e.Body = nil
		j.bodyOldest++
	}
}

// sinceLocked returns the retained entries with Seq > after, oldest first.
func (j *journal) sinceLocked(after uint64) []Request {
	n := len(j.entries)
	if n == 0 || j.seq <= after {
		return nil
	}
	oldest := j.seq - uint64(n) + 1
	skip := 0
	if after >= oldest {
		skip = int(after - oldest + 1)
	}
	out := make([]Request, 0, n-skip)
	for i := skip; i < n; i++ {
		out = append(out, j.entries[(j.start+i)%n])
	}
	return out
}

// bodyTap passes a request body through and keeps its first limit bytes
// for the journal, counting all it passed.
type bodyTap struct {
	io.ReadCloser
	limit int

	mu   sync.Mutex
	kept []byte
	n    int64
}

func (t *bodyTap) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if n > 0 {
		t.mu.Lock()
		t.n += int64(n)
		if room := t.limit - len(t.kept); room > 0 {
			t.kept = append(t.kept, p[:min(n, room)]...)
		}
		t.mu.Unlock()
	}
	return n, err
}

// taken returns the kept start of the body and the bytes read in all.
func (t *bodyTap) taken() ([]byte, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.kept, t.n
}
