package load

import (
	"context"
	"sync"
	"time"
)

// pendingProbe samples a per-device condition that, once a device meets it,
// is expected to hold (the cloud sees the device on the new commit, the
// cloud has received the device's log lines), reading as few devices as it
// can so that sampling can be frequent:
//
//   - with hints (devices the gateway saw do what leads to the condition,
//     like a report of the new commit answered by the supervisor), a
//     sample reads the hinted devices not yet seen meeting it, and every
//     sweepEvery-th sample every device not yet seen meeting it, so that a
//     device that meets it without a hint is found too;
//   - without hints, every sample reads every device not yet seen meeting
//     it, fewer as the phase progresses.
//
// When every device has been seen, it reads them all once more and counts
// only those that still meet it: a device that fell back (the cloud went
// back to an older commit) is pending again, and the phase converges only
// when all meet it at once.
type pendingProbe struct {
	lookup func(ctx context.Context, uuids []string) ([]CloudDevice, error)
	// devices and count, if set, return the devices to watch and their
	// number: the list is read again when the number differs from its
	// length (devices come as they are provisioned). Nil watches the
	// devices given at the start.
	devices func() []string
	count   func() int
	ok      func(CloudDevice) bool
	// seen notes when each device was first seen meeting the condition.
	seen *firstTimes
	// hints, if set, are the devices to read first.
	hints *hintQueue

	all     []string
	watched map[string]bool // the devices of all
	pending map[string]bool
	// hinted are hinted devices that did not meet the condition yet.
	hinted  []string
	samples int
}

// sweepEvery is how often a probe with hints reads every pending device.
const sweepEvery = 10

// newPendingProbe watches the devices the gateway manages now.
func (h *Harness) newPendingProbe(ok func(CloudDevice) bool, seen *firstTimes, hints *hintQueue) *pendingProbe {
	pp := &pendingProbe{lookup: h.cloudLookup, ok: ok, seen: seen, hints: hints}
	pp.watch(h.managed())
	return pp
}

// watch sets the devices to watch; those not watched before are pending,
// and those no longer in all are forgotten.
func (pp *pendingProbe) watch(all []string) {
	if pp.pending == nil || len(all) < len(pp.watched) {
		in := make(map[string]bool, len(all))
		for _, u := range all {
			in[u] = true
		}
		for u := range pp.pending {
			if !in[u] {
				delete(pp.pending, u)
			}
		}
		if pp.pending == nil {
			pp.pending = make(map[string]bool, len(all))
		}
		watched := make(map[string]bool, len(all))
		for u := range pp.watched {
			if in[u] {
				watched[u] = true
			}
		}
		pp.watched = watched
	}
	for _, u := range all {
		if !pp.watched[u] {
			pp.watched[u] = true
			pp.pending[u] = true
		}
	}
	pp.all = all
}

func (pp *pendingProbe) sample(ctx context.Context) (int, int, error) {
	if pp.devices != nil && pp.count() != len(pp.all) {
		pp.watch(pp.devices())
	}
	pp.samples++
	if len(pp.pending) > 0 {
		var read []string
		if pp.hints != nil {
			pp.hinted = append(pp.hinted, pp.hints.take()...)
		}
		if pp.hints == nil || pp.samples%sweepEvery == 1 {
			read = make([]string, 0, len(pp.pending))
			for u := range pp.pending {
				read = append(read, u)
			}
		} else {
			read = pp.hinted[:0:0]
			for _, u := range pp.hinted {
				if pp.pending[u] {
					read = append(read, u)
				}
			}
		}
		met, err := pp.read(ctx, read)
		if err != nil {
			return 0, 0, err
		}
		still := pp.hinted[:0]
		for _, u := range pp.hinted {
			if pp.pending[u] && !met[u] {
				still = append(still, u)
			}
		}
		clear(pp.hinted[len(still):])
		pp.hinted = still
		for u := range met {
			delete(pp.pending, u)
		}
		if len(pp.pending) > 0 {
			return len(pp.all) - len(pp.pending), len(pp.all), nil
		}
	}
	// Every device was seen meeting it: do they all, now?
	met, err := pp.read(ctx, pp.all)
	if err != nil {
		return 0, 0, err
	}
	for _, u := range pp.all {
		if !met[u] {
			pp.pending[u] = true
		}
	}
	return len(pp.all) - len(pp.pending), len(pp.all), nil
}

// read returns the devices of uuids that meet the condition.
func (pp *pendingProbe) read(ctx context.Context, uuids []string) (map[string]bool, error) {
	met := map[string]bool{}
	if len(uuids) == 0 {
		return met, nil
	}
	ds, err := pp.lookup(ctx, uuids)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, d := range ds {
		if pp.ok(d) {
			met[d.UUID] = true
			pp.seen.note(d.UUID, now)
		}
	}
	return met, nil
}

// hintQueue collects the devices a probe should read next. It is safe for
// concurrent use.
type hintQueue struct {
	mu    sync.Mutex
	uuids []string
}

func (q *hintQueue) add(uuid string) {
	q.mu.Lock()
	q.uuids = append(q.uuids, uuid)
	q.mu.Unlock()
}

func (q *hintQueue) take() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.uuids
	q.uuids = nil
	return out
}
