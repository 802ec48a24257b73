package store

// Which devices changed since a generation (see Store.Generation): each
// write transaction that commits records the uuids of the devices its
// writes changed, or that any may have changed, before Generation moves.
// A reader that derived something per device at generation g (an encoded
// device object, a device's hook work) re-reads only the devices changed
// since g, and finds out cheaply whether a device changed at all.

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
)

// changeLogSize bounds the device changes remembered; a reader asking about
// changes older than the oldest remembered is told that any device may
// have changed. 262,144 entries (~6 MB) span about a minute of changes of
// a fleet of a million devices being provisioned (~5,000 a second): the
// hook dispatcher, which catches up on them at intervals of three times
// its last read (seconds after a rebuild of hundreds of thousands of
// pending hooks), then still reads only the changes, not every pending
// device again.
const changeLogSize = 1 << 18

// changeEntry is one device changed by the transaction that moved the
// generation to gen.
type changeEntry struct {
	gen  uint64
	uuid string
}

// changeLog is the ring of recent device changes.
type changeLog struct {
	mu   sync.Mutex
	ring []changeEntry // circular, len ≤ changeLogSize
	next int           // where the next entry goes once the ring is full
	// horizon: changes after this generation are all in the ring (or
	// covered by allAt); before it some were overwritten.
	horizon uint64
	// allAt is the last generation whose transaction may have changed any
	// device.
	allAt uint64
	// last is, per device changed after allAt, the index of the last
	// generation that changed it (lastGen, for DeviceChangedSince) and of
	// the log's own copy of its uuid (lastKey). The map is never assigned
	// an existing key again: that would replace its key by the caller's
	// string, and a uuid cut from a request's path keeps the whole request
	// line alive (a million devices being provisioned: ~100 MB).
	last    map[string]int
	lastGen []uint64
	lastKey []string
}

// record notes the changes of the transaction that moves the generation to
// gen. It runs on the committer before the generation moves.
func (l *changeLog) record(gen uint64, uuids []string, all bool) {
	if !all && len(uuids) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if all || len(uuids) > changeLogSize/4 {
		l.allAt = gen
		clear(l.last)
		clear(l.lastKey)
		l.lastGen, l.lastKey = l.lastGen[:0], l.lastKey[:0]
		return
	}
	if l.last == nil {
		l.last = map[string]int{}
	}
	for _, u := range uuids {
		i, ok := l.last[u]
		if !ok {
			i = len(l.lastGen)
			k := strings.Clone(u)
			l.last[k] = i
			l.lastGen, l.lastKey = append(l.lastGen, gen), append(l.lastKey, k)
		}
		l.lastGen[i] = gen
		u = l.lastKey[i]
		if len(l.ring) < changeLogSize {
			l.ring = append(l.ring, changeEntry{gen, u})
			continue
		}
		l.horizon = max(l.horizon, l.ring[l.next].gen)
		l.ring[l.next] = changeEntry{gen, u}
		l.next = (l.next + 1) % changeLogSize
	}
}

// since returns the devices changed after generation g, each once, or all
// when any may have changed (or the ring no longer reaches back to g).
func (l *changeLog) since(g uint64) (uuids []string, all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.allAt > g || l.horizon > g {
		return nil, true
	}
	seen := map[string]bool{}
	// Newest first: the ring's entries are in generation order from next.
	n := len(l.ring)
	for i := range n {
		e := l.ring[(l.next+n-1-i)%n]
		if e.gen <= g {
			break
		}
		if !seen[e.uuid] {
			seen[e.uuid] = true
			uuids = append(uuids, e.uuid)
		}
	}
	return uuids, false
}

// changedSince reports whether device uuid may have changed after g.
func (l *changeLog) changedSince(uuid string, g uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.last[uuid]
	return l.allAt > g || ok && l.lastGen[i] > g
}

// DeviceChangedSince reports whether device uuid may have changed (been
// inserted, updated or deleted) in a write transaction that moved the
// Generation beyond g. False means that whatever a reader read of the
// device after it saw Generation g is still what the database holds.
func (s *Store) DeviceChangedSince(uuid string, g uint64) bool {
	return s.changes.changedSince(uuid, g)
}

// ChangedDeviceViews reads the DeviceViews of the devices changed by write
// transactions that moved the Generation beyond since, and calls fn for
// each: v is nil for a device that no longer exists. It returns the
// generation the result is current for: every device not passed to fn is
// unchanged since since, and all the views were read in one snapshot of
// the database at exactly that generation. all is true (and fn not called)
// when it cannot tell which devices changed, or no stable snapshot could be
// had while writes kept committing: read every device again then.
func (s *Store) ChangedDeviceViews(ctx context.Context, since uint64, fn func(uuid string, v *DeviceView) error) (at uint64, all bool, err error) {
	var views map[string]*DeviceView
	at, uuids, all, err := s.readChanged(since, func(uuids []string) (err error) {
		views, err = s.deviceViews(ctx, uuids)
		return err
	})
	if all || err != nil {
		return at, all, err
	}
	for _, u := range uuids {
		if err := fn(u, views[u]); err != nil {
			return 0, false, err
		}
	}
	return at, false, nil
}

// readChanged calls read with the devices changed by write transactions
// that moved the Generation beyond since, such that what read reads in one
// statement (one snapshot of the database) is exactly at the generation it
// returns; it tries again when a transaction committed meanwhile. all is
// true (and read's result to be dropped) when it cannot tell which devices
// changed, or no stable snapshot could be had while writes kept committing.
func (s *Store) readChanged(since uint64, read func(uuids []string) error) (at uint64, uuids []string, all bool, err error) {
	for range 3 {
		p, g := s.gc.pending.Load(), s.gc.gen.Load()
		if p != g { // a transaction is committing
			continue
		}
		var uuids []string
		if since < g {
			var all bool
			if uuids, all = s.changes.since(since); all {
				return g, nil, true, nil
			}
		}
		if err := read(uuids); err != nil {
			return 0, nil, false, err
		}
		if s.gc.pending.Load() != p {
			continue // a transaction started meanwhile: maybe in the snapshot
		}
		return g, uuids, false, nil
	}
	return s.gc.gen.Load(), nil, true, nil
}

// deviceViews reads the views of the devices uuids in one statement.
func (s *Store) deviceViews(ctx context.Context, uuids []string) (map[string]*DeviceView, error) {
	out := make(map[string]*DeviceView, len(uuids))
	if len(uuids) == 0 {
		return out, nil
	}
	rows, err := s.queryUUIDs(ctx, deviceViewColumns, uuids)
	if err != nil {
		return nil, fmt.Errorf("store: changed devices: %w", err)
	}
	err = scanDeviceViews(rows, func(v *DeviceView) error {
		c := *v
		out[c.UUID] = &c
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: changed devices: %w", err)
	}
	return out, nil
}

// queryUUIDs runs columns, a SELECT of devices d, for the devices uuids in
// one statement.
func (s *Store) queryUUIDs(ctx context.Context, columns string, uuids []string) (*sql.Rows, error) {
	list, err := json.Marshal(uuids)
	if err != nil {
		return nil, err
	}
	st, err := s.prepared(ctx, s.r, columns+` WHERE d.uuid IN (SELECT value FROM json_each(?))`)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, string(list))
}

// genCounters are the committer's generation counters: pending moves when a
// transaction starts to commit, gen once it committed (or failed to); they
// differ while a commit is under way.
type genCounters struct {
	pending, gen atomic.Uint64
}
