package cloud

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/depharness/depharness/internal/jsonstr"
)

// stateLocked returns the rendered target state document of gw and its
// strong ETag, rendering it only when gw's version moved since the last
// render. The returned body must not be modified.
func (s *Server) stateLocked(gw *gateway) (body []byte, etag string) {
	if gw.cacheBody != nil && gw.cacheVersion == gw.version {
		return gw.cacheBody, gw.cacheETag
	}
	render := renderSeq.Add(1)
	body = renderStateLocked(gw, render)
	sum := sha256.Sum256(body)
	gw.cacheBody, gw.cacheRender = body, render
	gw.cacheETag = `"` + hex.EncodeToString(sum[:16]) + `"`
	gw.cacheVersion = gw.version
	gw.renders++
	s.metrics.stateRenders.Inc()
	return gw.cacheBody, gw.cacheETag
}

// renderSeq numbers the renders of every gateway of every server, so that
// a device's place in a document (device.fragRender) names one document
// even after the device moved to another gateway.
var renderSeq atomic.Uint64

// renderStateLocked renders the document of CONTRACT.md CLOUD-STATE for gw
// (a cloudapi.TargetState), with map keys sorted so that equal states give
// equal bytes, as render number render. A device whose entry is unchanged
// since gw's cached document is copied from that document, so a gateway
// with many devices re-renders in about the time it takes to copy the
// bytes. Render 0 renders every entry afresh and records no place.
func renderStateLocked(gw *gateway, render uint64) []byte {
	appIDs := make([]int64, 0, len(gw.app.apps))
	for id := range gw.app.apps {
		appIDs = append(appIDs, id)
	}
	slices.Sort(appIDs)
	devices := orderLocked(gw)
	prev, prevRender := gw.cacheBody, gw.cacheRender
	copies := func(d *device) bool {
		return render != 0 && prev != nil && d.fragRender == prevRender &&
			d.fragVersion == d.version && d.fragApp == d.app && d.fragAppVars == d.app.varsVersion
	}
	size := 64 + len(appIDs)*256
	for _, d := range devices {
		if copies(d) {
			size += d.fragLen + 1
		} else {
			size += max(d.fragLen, 160) + 32 // a guess, grown by append if short
		}
	}
	b := make([]byte, 0, size)
	b = append(b, `{"local":{},"dependent":{"apps":{`...)
	for i, id := range appIDs {
		if i > 0 {
			b = append(b, ',')
		}
		a := gw.app.apps[id]
		b = append(b, '"')
		b = strconv.AppendInt(b, id, 10)
		b = append(b, `":{"name":`...)
		b = jsonstr.Append(b, a.name)
		b = append(b, `,"parentApp":`...)
		b = strconv.AppendInt(b, a.parent.id, 10)
		b = append(b, `,"config":`...)
		b = appendVars(b, a.config, nil, jsonstr.Append)
		if r := a.release; r != nil {
			b = append(b, `,"commit":`...)
			b = jsonstr.Append(b, r.Commit)
			b = append(b, `,"releaseId":`...)
			b = strconv.AppendInt(b, r.ID, 10)
			b = append(b, `,"image":`...)
			b = jsonstr.Append(b, r.Image)
		}
		b = append(b, '}')
	}
	b = append(b, `},"devices":{`...)
	for i, d := range devices {
		if i > 0 {
			b = append(b, ',')
		}
		at := len(b)
		switch {
		case render == 0:
			b = appendDeviceEntry(b, d)
			continue
		case copies(d):
			b = append(b, prev[d.fragAt:d.fragAt+d.fragLen]...)
		default:
			b = appendDeviceEntry(b, d)
			d.fragVersion, d.fragApp, d.fragAppVars = d.version, d.app, d.app.varsVersion
		}
		d.fragRender, d.fragAt, d.fragLen = render, at, len(b)-at
	}
	b = append(b, "}}}"...)
	return b
}

// orderLocked returns gw's devices sorted by uuid (gateway.order): sorted
// whole after a device left, else the devices added since merged in.
func orderLocked(gw *gateway) []*device {
	byUUID := func(a, b *device) int { return strings.Compare(a.uuid, b.uuid) }
	switch {
	case !gw.orderValid:
		gw.order = gw.order[:0]
		for _, d := range gw.devices {
			gw.order = append(gw.order, d)
		}
		slices.SortFunc(gw.order, byUUID)
		gw.orderValid = true
	case len(gw.added) > 0:
		slices.SortFunc(gw.added, byUUID)
		merged := make([]*device, 0, len(gw.order)+len(gw.added))
		old, added := gw.order, gw.added
		for len(old) > 0 || len(added) > 0 {
			if len(added) == 0 || len(old) > 0 && old[0].uuid < added[0].uuid {
				merged, old = append(merged, old[0]), old[1:]
			} else {
				merged, added = append(merged, added[0]), added[1:]
			}
		}
		gw.order = merged
	}
	clear(gw.added)
	gw.added = gw.added[:0]
	return gw.order
}

// appendDeviceEntry appends d's entry of the devices object,
// "<uuid>":{"name":…,"restart":…,"apps":{"<appId>":{"config":…,"environment":…}}}.
func appendDeviceEntry(b []byte, d *device) []byte {
	b = jsonstr.Append(b, d.uuid)
	b = append(b, `:{"name":`...)
	b = jsonstr.Append(b, d.name)
	if d.restart != 0 {
		b = append(b, `,"restart":`...)
		b = strconv.AppendInt(b, d.restart, 10)
	}
	b = append(b, `,"apps":{"`...)
	b = strconv.AppendInt(b, d.app.id, 10)
	b = append(b, `":{"config":`...)
	b = appendVars(b, d.app.config, d.config, jsonstr.Append)
	b = append(b, `,"environment":`...)
	b = appendVars(b, d.app.env, d.env, jsonstr.Append)
	return append(b, "}}}"...)
}

// appendVars appends the JSON object of base overridden by over, keys
// sorted, each key and value written by str: jsonstr.Append for the target
// state, appendJSONString (HTML characters escaped) for the state file.
func appendVars(b []byte, base, over map[string]string, str func([]byte, string) []byte) []byte {
	var small [8]string
	keys := small[:0]
	if n := len(base) + len(over); n > len(small) {
		keys = make([]string, 0, n)
	}
	for k := range base {
		if _, ok := over[k]; !ok {
			keys = append(keys, k)
		}
	}
	for k := range over {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		v, ok := over[k]
		if !ok {
			v = base[k]
		}
		b = str(b, k)
		b = append(b, ':')
		b = str(b, v)
	}
	return append(b, '}')
}

// etagMatches reports whether an If-None-Match header value matches etag
// (weak comparison, as RFC 9110 prescribes for If-None-Match).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "*" {
			return true
		}
		if strings.TrimPrefix(part, "W/") == want {
			return true
		}
	}
	return false
}
