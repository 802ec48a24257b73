package cloud

// journal is a bounded ring of the protocol requests received, oldest
// dropped. Guarded by Server.mu.
type journal struct {
	limit   int
	entries []Request // ring; start is the oldest when full
	start   int
	seq     uint64
}

// addLocked appends r, giving it the next sequence number.
func (j *journal) addLocked(r Request) Request {
	j.seq++
	r.Seq = j.seq
	if len(j.entries) < j.limit {
		j.entries = append(j.entries, r)
		return r
	}
	j.entries[j.start] = r
	j.start = (j.start + 1) % len(j.entries)
	return r
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
