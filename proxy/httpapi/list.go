package httpapi

import (
	"context"
	"slices"
	"sync"

	"github.com/depharness/depharness/proxy/store"
)

// The device list (GET /v1/devices) is kept as one encoded device object
// per device, in row id order, current for a store generation. A list read
// after writes re-reads and re-encodes only the devices those writes
// changed (store.ChangedDeviceViews, from one snapshot at exactly one
// generation); only when the store cannot tell which devices changed (a
// new current commit of an app changes every device's targetCommit) is
// every device read again, from one snapshot. The body is sent as
// segments of listSegment objects joined, so that a change re-joins one
// segment, not the whole list.

// listSegment is the number of devices per segment of the body.
const listSegment = 256

// listParts is a list body: its parts, sent one after the other, and its
// length. Neither the parts nor their bytes are modified once made.
type listParts struct {
	parts [][]byte
	size  int
}

// listEntry is one device of the list.
type listEntry struct {
	id     int64
	uuid   string
	obj    []byte // its device object; never modified once set
	hidden bool   // not listed (list-hides-marked)
}

// deviceList is the list's objects and the body they last made.
type deviceList struct {
	mu      sync.Mutex // held while the list is brought up to date
	ok      bool       // entries are current for gen
	gen     uint64
	entries []listEntry    // by id
	index   map[string]int // uuid → position in entries
	// segs are the visible objects of each listSegment entries joined
	// with commas; nil: to join again.
	segs [][]byte
	body *listParts // the segments as a body, nil once one changed
}

// listBody returns the list's body as of the store's current generation
// (or later) and the generation it is current for.
func (h *Handler) listBody(ctx context.Context) (*listParts, uint64, error) {
	l := &h.list
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ok {
		at, all, err := h.opts.Store.ChangedDeviceViews(ctx, l.gen, func(uuid string, v *store.DeviceView) error {
			return h.updateEntry(l, uuid, v)
		})
		if err != nil {
			l.ok = false // entries may be half updated
			return nil, 0, err
		}
		if !all {
			l.gen = at
			return l.joined(), at, nil
		}
	}
	l.ok = false
	gen := h.opts.Store.Generation()
	entries := l.entries[:0]
	clear(l.index)
	if l.index == nil {
		l.index = map[string]int{}
	}
	// The objects of a full read share one buffer, grown once.
	buf := make([]byte, 0, max(l.size(), 512)*9/8)
	err := h.opts.Store.EachDeviceView(ctx, func(v *store.DeviceView) error {
		start := len(buf)
		var err error
		if buf, err = h.appendListed(buf, v); err != nil {
			return err
		}
		l.index[v.UUID] = len(entries)
		entries = append(entries, listEntry{id: v.ID, uuid: v.UUID, obj: buf[start:len(buf):len(buf)], hidden: h.hidden(v)})
		return nil
	})
	if err != nil {
		clear(entries)
		l.entries = entries[:0]
		return nil, 0, err
	}
	l.entries, l.gen, l.ok = entries, gen, true
	l.changedFrom(0)
	return l.joined(), gen, nil
}

// hidden reports whether v is left out of the list.
func (h *Handler) hidden(v *store.DeviceView) bool {
	return v.MarkedForDelete && h.v.On("list-hides-marked")
}

// appendListed appends v's device object as the list shows it.
func (h *Handler) appendListed(b []byte, v *store.DeviceView) ([]byte, error) {
	numeric := h.v.On("put-isonline-number") || (h.v.On("list-reported-online-number") && v.IsOnline != nil)
	return appendDevice(b, v, numeric)
}

// updateEntry brings device uuid's entry up to date with v (nil: the
// device is gone).
func (h *Handler) updateEntry(l *deviceList, uuid string, v *store.DeviceView) error {
	i, known := l.index[uuid]
	if v == nil {
		if known {
			l.entries = slices.Delete(l.entries, i, i+1)
			delete(l.index, uuid)
			l.reindex(i)
			l.changedFrom(i)
		}
		return nil
	}
	obj, err := h.appendListed(nil, v)
	if err != nil {
		return err
	}
	e := listEntry{id: v.ID, uuid: uuid, obj: obj, hidden: h.hidden(v)}
	if known && l.entries[i].id == v.ID {
		l.entries[i] = e
		l.segs[i/listSegment] = nil
		l.body = nil
		return nil
	}
	if known { // the same uuid under a new row id: placed anew
		l.entries = slices.Delete(l.entries, i, i+1)
		l.reindex(i)
		l.changedFrom(i)
	}
	at, _ := slices.BinarySearchFunc(l.entries, v.ID, func(e listEntry, id int64) int {
		switch {
		case e.id < id:
			return -1
		case e.id > id:
			return 1
		}
		return 0
	})
	l.entries = slices.Insert(l.entries, at, e)
	l.reindex(at)
	l.changedFrom(at)
	return nil
}

// changedFrom marks the segments from the one holding entry i on as to
// join again (entries moved), and sizes segs to the entries.
func (l *deviceList) changedFrom(i int) {
	n := (len(l.entries) + listSegment - 1) / listSegment
	if cap(l.segs) < n {
		l.segs = slices.Grow(l.segs[:0], n)
	}
	l.segs = l.segs[:n]
	clear(l.segs[min(i/listSegment, n):])
	l.body = nil
}

// reindex updates the index of the entries from position from on.
func (l *deviceList) reindex(from int) {
	for i := from; i < len(l.entries); i++ {
		l.index[l.entries[i].uuid] = i
	}
}

// size is the length of the entries' objects joined.
func (l *deviceList) size() int {
	n := 2
	for _, e := range l.entries {
		n += len(e.obj) + 1
	}
	return n
}

// joined returns the body of the entries, joining again the segments that
// changed.
func (l *deviceList) joined() *listParts {
	if l.body != nil {
		return l.body
	}
	body := &listParts{parts: make([][]byte, 0, 2*len(l.segs)+2), size: 2}
	body.parts = append(body.parts, []byte("["))
	for k := range l.segs {
		if l.segs[k] == nil {
			l.segs[k] = joinSegment(l.entries[k*listSegment : min((k+1)*listSegment, len(l.entries))])
		}
		if len(l.segs[k]) == 0 {
			continue
		}
		if len(body.parts) > 1 {
			body.parts = append(body.parts, []byte(","))
			body.size++
		}
		body.parts = append(body.parts, l.segs[k])
		body.size += len(l.segs[k])
	}
	body.parts = append(body.parts, []byte("]"))
	l.body = body
	return body
}

// joinSegment joins the visible objects of entries with commas.
func joinSegment(entries []listEntry) []byte {
	n := 0
	for _, e := range entries {
		n += len(e.obj) + 1
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		if e.hidden {
			continue
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b = append(b, e.obj...)
	}
	return b
}
