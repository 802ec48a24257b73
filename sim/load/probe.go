package load

import (
	"context"
	"time"
)

// pendingProbe samples a per-device condition that, once a device meets it,
// is expected to hold (the cloud sees the device on the new commit, the
// cloud has received the device's log lines): each sample reads only the
// devices not yet seen to meet it, so sampling costs less as the phase
// progresses and can be frequent. When every device has been seen, it reads
// them all once more and counts only those that still meet it: a device
// that fell back (the cloud went back to an older commit) is pending again,
// and the phase converges only when all meet it at once.
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

	all     []string
	pending []string
}

// newPendingProbe watches the devices the gateway manages now.
func (h *Harness) newPendingProbe(ok func(CloudDevice) bool, seen *firstTimes) *pendingProbe {
	all := h.managed()
	return &pendingProbe{lookup: h.cloudLookup, ok: ok, seen: seen, all: all, pending: append([]string(nil), all...)}
}

func (pp *pendingProbe) sample(ctx context.Context) (int, int, error) {
	if pp.devices != nil && pp.count() != len(pp.all) {
		all := pp.devices()
		known := make(map[string]bool, len(pp.all))
		for _, u := range pp.all {
			known[u] = true
		}
		for _, u := range all {
			if !known[u] {
				pp.pending = append(pp.pending, u)
			}
		}
		pp.all = all
	}
	if len(pp.pending) > 0 {
		met, err := pp.read(ctx, pp.pending)
		if err != nil {
			return 0, 0, err
		}
		pp.pending = remove(pp.pending, met)
		if len(pp.pending) > 0 {
			return len(pp.all) - len(pp.pending), len(pp.all), nil
		}
	}
	// Every device was seen meeting it: do they all, now?
	met, err := pp.read(ctx, pp.all)
	if err != nil {
		return 0, 0, err
	}
	pp.pending = remove(append([]string(nil), pp.all...), met)
	return len(pp.all) - len(pp.pending), len(pp.all), nil
}

// read returns the devices of uuids that meet the condition.
func (pp *pendingProbe) read(ctx context.Context, uuids []string) (map[string]bool, error) {
	ds, err := pp.lookup(ctx, uuids)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	met := map[string]bool{}
	for _, d := range ds {
		if pp.ok(d) {
			met[d.UUID] = true
			pp.seen.note(d.UUID, now)
		}
	}
	return met, nil
}

// remove drops the uuids in drop from uuids, in place.
func remove(uuids []string, drop map[string]bool) []string {
	if len(drop) == 0 {
		return uuids
	}
	out := uuids[:0]
	for _, u := range uuids {
		if !drop[u] {
			out = append(out, u)
		}
	}
	clear(uuids[len(out):])
	return out
}
