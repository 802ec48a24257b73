package cloudclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/maphash"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/depharness/depharness/api/cloud"
)

// Decoding the target state. The whole document comes with every change of
// any device (and, while devices provisioned here are not yet in a target,
// with every poll), so decoding its devices dominated a poll with many
// devices. The document is read whole and walked once by a strict scanner
// (scanState) that finds each device's value without decoding it; a device
// whose bytes equal those of the previous document keeps what it decoded
// to, and only the others go through encoding/json. A document the walk
// does not take as plainly well formed (escaped or unusual member names,
// nulls where objects are expected, repeated members, deep nesting, any
// syntax error) is decoded by encoding/json instead (decodeReflective),
// which gives its answer, error or not.

// stateDecoder decodes target states, keeping the devices of the last one.
type stateDecoder struct {
	mu sync.Mutex
	// devices are those of the last document, by uuid; updated in place
	// (a document of 100,000 devices, most unchanged, allocates no new
	// map for them).
	devices map[string]*decodedDevice
	stamp   uint64 // counts documents decoded through scanState
	// buf is the last document read, read into again next: nothing refers
	// to it once decoded (a device keeps a digest of its bytes, not the
	// bytes). members is scanState's list, reused.
	buf     []byte
	members []member
	// seeds of the devices' digests, drawn at the first document.
	seeds  [2]maphash.Seed
	seeded bool
	// shared holds the devices' app targets, one for each content.
	shared sharedTargets
}

// decodedDevice is a digest of a device's raw value and what it decoded
// to. Two values with the same length and 128-bit digest (two 64-bit
// maphash sums, seeded at random) are taken to be the same bytes.
type decodedDevice struct {
	uuid string
	sum  rawSum
	dev  cloud.DependentDevice
	seen uint64 // the stamp of the last document that had it
}

// rawSum is the digest of a device's raw value.
type rawSum struct {
	n    int
	a, b uint64
}

// sum returns the digest of raw.
func (sd *stateDecoder) sum(raw []byte) rawSum {
	return rawSum{n: len(raw), a: maphash.Bytes(sd.seeds[0], raw), b: maphash.Bytes(sd.seeds[1], raw)}
}

// decode reads one target state from r (at most limit bytes). The maps of
// the devices it returns may be those of an earlier state's: callers must
// not modify them.
func (sd *stateDecoder) decode(r io.Reader, limit int64) (*cloud.TargetState, error) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if !sd.seeded {
		sd.seeds, sd.seeded = [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}, true
	}
	if want := min(len(sd.buf)+len(sd.buf)/8+512, int(limit)+1); cap(sd.buf) < want {
		sd.buf = make([]byte, 0, want) // room for some growth without doubling
	}
	buf := bytes.NewBuffer(sd.buf[:0])
	_, readErr := buf.ReadFrom(io.LimitReader(r, limit+1))
	b := buf.Bytes()
	// Whichever way b decodes, nothing refers to it afterwards: it is read
	// into next time.
	sd.buf = b
	if readErr == nil && int64(len(b)) > limit {
		return nil, fmt.Errorf("body larger than %d bytes", limit)
	}
	if readErr == nil {
		if st, ok := sd.decodeScanned(b); ok {
			return st, nil
		}
	}
	st, err := sd.decodeReflective(bytes.NewReader(b), limit)
	if readErr != nil && err != nil {
		return nil, readErr
	}
	return st, err
}

// decodeScanned decodes b through scanState, keeping its devices. ok is
// false if the walk did not take b: decodeReflective must then answer (and
// forget the devices kept, which may be updated in part).
func (sd *stateDecoder) decodeScanned(b []byte) (st *cloud.TargetState, ok bool) {
	doc, ok := scanState(b, sd.members[:0])
	if doc.devices != nil {
		sd.members = doc.devices
		defer clear(sd.members) // nothing refers to b through them
	}
	if !ok {
		return nil, false
	}
	st = &cloud.TargetState{Local: doc.local}
	if doc.apps != nil {
		if err := json.Unmarshal(doc.apps, &st.Dependent.Apps); err != nil {
			return nil, false
		}
	}
	if doc.devices == nil {
		sd.devices = nil // they refer to the document before
		return st, true
	}
	if sd.devices == nil {
		sd.devices = make(map[string]*decodedDevice, len(doc.devices))
	}
	sd.stamp++
	devices := make(map[string]cloud.DependentDevice, len(doc.devices))
	for _, m := range doc.devices {
		dd := sd.devices[string(m.name)]
		sum := sd.sum(m.raw)
		switch {
		case dd != nil && dd.seen == sd.stamp:
			return nil, false // repeated: encoding/json decodes each and keeps the last
		case dd != nil && dd.sum == sum:
			dd.seen = sd.stamp
			devices[dd.uuid] = dd.dev
			continue
		}
		var d cloud.DependentDevice
		if err := json.Unmarshal(m.raw, &d); err != nil {
			return nil, false
		}
		sd.shared.share(&d)
		if dd == nil {
			dd = &decodedDevice{uuid: string(m.name)}
			sd.devices[dd.uuid] = dd
		}
		dd.sum, dd.dev, dd.seen = sum, d, sd.stamp
		devices[dd.uuid] = d
	}
	sd.shared.trim(len(devices))
	if len(sd.devices) > len(devices) { // some are gone
		for u, dd := range sd.devices {
			if dd.seen != sd.stamp {
				delete(sd.devices, u)
			}
		}
	}
	st.Dependent.Devices = devices
	return st, true
}

// sharedTargets keeps one copy of each device app target decoded: devices
// with equal variables (most of a fleet) share their maps, which were most
// of the memory the kept devices took (three maps a device). Nobody
// modifies them (decode's callers must not).
type sharedTargets struct {
	vars map[string]map[string]string // by varsKey
	apps map[appsKey]map[string]cloud.DeviceAppTarget
}

// appsKey names a device's apps map of one app whose config and
// environment are shared (by address: the shared maps stay referenced by
// sharedTargets.vars while the key is in use).
type appsKey struct {
	app      string
	cfg, env uintptr
}

// share replaces d's apps map, if of one app, and the app's config and
// environment by the shared ones of equal content (nil stays nil).
func (st *sharedTargets) share(d *cloud.DependentDevice) {
	if len(d.Apps) != 1 {
		return
	}
	if st.vars == nil {
		st.vars = map[string]map[string]string{}
		st.apps = map[appsKey]map[string]cloud.DeviceAppTarget{}
	}
	for app, t := range d.Apps {
		t.Config, t.Environment = st.sharedVars(t.Config), st.sharedVars(t.Environment)
		k := appsKey{app: app, cfg: mapAddr(t.Config), env: mapAddr(t.Environment)}
		if m, ok := st.apps[k]; ok {
			d.Apps = m
			return
		}
		d.Apps = map[string]cloud.DeviceAppTarget{app: t}
		st.apps[k] = d.Apps
	}
}

// sharedVars returns the shared map equal to m (nil for nil).
func (st *sharedTargets) sharedVars(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	k := varsKey(m)
	if s, ok := st.vars[k]; ok {
		return s
	}
	st.vars[k] = m
	return m
}

// trim forgets the shared targets once they are many more than the
// devices (distinct variables come and go): the devices keep theirs, and
// those decoded next share anew.
func (st *sharedTargets) trim(devices int) {
	if len(st.vars)+len(st.apps) > 2*devices+1024 {
		*st = sharedTargets{}
	}
}

// varsKey is m's content as a string: sorted keys and values, each
// length-prefixed.
func varsKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b []byte
	for _, k := range keys {
		b = strconv.AppendInt(b, int64(len(k)), 10)
		b = append(b, ':')
		b = append(b, k...)
		b = strconv.AppendInt(b, int64(len(m[k])), 10)
		b = append(b, ':')
		b = append(b, m[k]...)
	}
	return string(b)
}

// mapAddr is m's address (0 for nil).
func mapAddr(m map[string]string) uintptr {
	return uintptr(reflect.ValueOf(m).UnsafePointer())
}

// decodeReflective decodes one target state from r with encoding/json, and
// forgets the devices kept.
func (sd *stateDecoder) decodeReflective(r io.Reader, limit int64) (*cloud.TargetState, error) {
	sd.devices = nil
	var st cloud.TargetState
	if err := decodeJSON(r, limit, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// scannedState is a target state document as scanState found it: raw values
// (slices of the document), nil where absent.
type scannedState struct {
	local, apps []byte
	devices     []member // nil if absent; in document order
}

// member is one member of a JSON object: its name (unescaped: names with
// escapes are not taken) and raw value.
type member struct{ name, raw []byte }

// maxScanDepth bounds the nesting scanState follows; deeper documents are
// left to encoding/json (which allows 10,000 levels).
const maxScanDepth = 512

// scanState walks a target state document, listing its devices into
// members (reused, empty): an object whose members named
// exactly "local" (any value but null) and "dependent" (an object whose
// members "apps" and "devices" are objects) are taken; other members are
// checked and skipped. Data after the object is ignored, as
// json.Decoder.Decode ignores it. ok is false for anything else: malformed
// or incomplete JSON, a member named with escapes, a repeated member, a
// member name that encoding/json would match to one of those fields without
// being it (another case, non-ASCII), a device uuid that is not valid UTF-8,
// nesting deeper than maxScanDepth.
func scanState(b []byte, members []member) (doc scannedState, ok bool) {
	s := &scanner{b: b}
	var seenLocal, seenDependent bool
	ok = s.object(func(name []byte) bool {
		switch string(name) {
		case "local":
			if seenLocal || s.peek() == 'n' {
				return false
			}
			seenLocal = true
			start := s.i
			if !s.value(0) {
				return false
			}
			doc.local = bytes.Clone(s.b[start:s.i])
			return true
		case "dependent":
			if seenDependent || s.peek() != '{' {
				return false
			}
			seenDependent = true
			return s.object(func(name []byte) bool {
				switch string(name) {
				case "apps":
					if doc.apps != nil || s.peek() != '{' {
						return false
					}
					start := s.i
					if !s.value(1) {
						return false
					}
					doc.apps = s.b[start:s.i]
					return true
				case "devices":
					if doc.devices != nil || s.peek() != '{' {
						return false
					}
					if doc.devices = members[:0]; doc.devices == nil {
						doc.devices = []member{}
					}
					return s.object(func(name []byte) bool {
						if !utf8.Valid(name) {
							return false // encoding/json would replace the invalid bytes
						}
						start := s.i
						if !s.value(2) {
							return false
						}
						doc.devices = append(doc.devices, member{name: name, raw: s.b[start:s.i]})
						return true
					})
				}
				return plainOtherName(name, "apps", "devices") && s.value(1)
			})
		}
		return plainOtherName(name, "local", "dependent") && s.value(0)
	})
	return doc, ok
}

// plainOtherName reports whether encoding/json matches name to none of
// fields, which are lower-case ASCII: name is ASCII and equals none of them
// in any case.
func plainOtherName(name []byte, fields ...string) bool {
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for _, f := range fields {
		if strings.EqualFold(string(name), f) {
			return false
		}
	}
	return true
}

// scanner checks JSON strictly (RFC 8259, as encoding/json reads it) while
// walking it.
type scanner struct {
	b []byte
	i int
}

// ws skips whitespace.
func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// object reads an object, calling member for each member with its name
// (without escapes), the scanner at the start of its value; member reads
// the value and reports whether to go on.
func (s *scanner) object(member func(name []byte) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return true
	}
	for {
		if s.peek() != '"' {
			return false
		}
		name, escaped, ok := s.str()
		if !ok || escaped || s.peek() != ':' {
			return false
		}
		s.i++
		s.ws()
		if !member(name) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// value reads any value nested depth levels deep.
func (s *scanner) value(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	switch c := s.peek(); c {
	case '{':
		return s.object(func([]byte) bool { return s.value(depth + 1) })
	case '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case '"':
		_, _, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

// literal reads lit.
func (s *scanner) literal(lit string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(lit)) {
		return false
	}
	s.i += len(lit)
	return true
}

// str reads a string, returning its content between the quotes and whether
// it has escapes. Control characters must be escaped; other bytes, valid
// UTF-8 or not, are taken as encoding/json takes them.
func (s *scanner) str() (content []byte, escaped, ok bool) {
	s.i++ // the opening quote
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], escaped, true
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return nil, false, false
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return nil, false, false
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return nil, false, false
					}
				}
				s.i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			s.i++
		}
	}
	return nil, false, false
}

// number reads a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
// A number must be followed by something (as in any object or array).
func (s *scanner) number() bool {
	b, i := s.b, s.i
	digits := func() bool {
		n := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	if i >= len(b) {
		return false
	}
	s.i = i
	return true
}
