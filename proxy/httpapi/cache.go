package httpapi

import (
	"sync"
	"sync/atomic"
)

// The read cache keeps the encoded bodies of GET /v1/devices/{uuid} and
// GET /v1/devices, each tagged with the store's Generation at the time it
// was read. A device's body is served again only while the store says no
// write that finished since changed that device (store.DeviceChangedSince),
// the list's only while the generation has not moved (the list's objects
// are kept apart, see list.go), so no write that finished (and so no
// answered PUT, provisioning, sync or delete) is ever hidden from a later
// read. Under reads alone, a GET skips SQLite and the encoder.

// maxCachedDevices bounds the device bodies kept; past it the cache starts
// again empty (a generation change leaves stale entries until then).
const maxCachedDevices = 1 << 16

// cachedBody is an encoded response body read at generation gen. Its bytes
// are never modified.
type cachedBody struct {
	gen  uint64
	body []byte
}

// readCache holds the cached bodies.
type readCache struct {
	devices sync.Map // uuid → *cachedBody
	count   atomic.Int64
	list    atomic.Pointer[cachedList]
}

// cachedList is the device list's body read at generation gen.
type cachedList struct {
	gen  uint64
	body *listParts
}

// device returns uuid's body and the generation it was read at.
func (c *readCache) device(uuid string) ([]byte, uint64, bool) {
	v, ok := c.devices.Load(uuid)
	if !ok {
		return nil, 0, false
	}
	e := v.(*cachedBody)
	return e.body, e.gen, true
}

// putDevice keeps body, read at gen, for uuid.
func (c *readCache) putDevice(uuid string, gen uint64, body []byte) {
	if _, loaded := c.devices.Swap(uuid, &cachedBody{gen: gen, body: body}); !loaded {
		if c.count.Add(1) > maxCachedDevices {
			c.devices.Clear()
			c.count.Store(0)
		}
	}
}

// deviceList returns the device list's body if it was read at gen.
func (c *readCache) deviceList(gen uint64) (*listParts, bool) {
	if e := c.list.Load(); e != nil && e.gen == gen {
		return e.body, true
	}
	return nil, false
}

// putDeviceList keeps the device list's body, read at gen.
func (c *readCache) putDeviceList(gen uint64, body *listParts) {
	c.list.Store(&cachedList{gen: gen, body: body})
}
