package cloud

import (
	"context"
	"fmt"

	cloudapi "github.com/depharness/depharness/api/cloud"
)

// View is read access to the fake cloud's model for Await predicates. It
// is valid only during the predicate call, which runs with the model
// locked: a predicate must not call the Server's methods.
type View struct{ s *Server }

// Device returns the cloud's view of device uuid.
func (v *View) Device(uuid string) (DeviceInfo, bool) {
	d := v.s.devices[uuid]
	if d == nil {
		return DeviceInfo{}, false
	}
	return deviceInfoLocked(d), true
}

// CloudDevice returns device uuid as the protocol shows it.
func (v *View) CloudDevice(uuid string) (cloudapi.Device, bool) {
	d := v.s.devices[uuid]
	if d == nil {
		return cloudapi.Device{}, false
	}
	return cloudDeviceLocked(d), true
}

// DeviceCount returns the number of dependent devices.
func (v *View) DeviceCount() int { return len(v.s.devices) }

// GatewayDevices returns the number of dependent devices gateway uuid
// manages.
func (v *View) GatewayDevices(uuid string) int {
	if gw := v.s.gateways[uuid]; gw != nil {
		return len(gw.devices)
	}
	return 0
}

// LogCount returns the number of log lines ever received for device uuid.
func (v *View) LogCount(uuid string) int {
	if d := v.s.devices[uuid]; d != nil {
		return d.logCount
	}
	return 0
}

// Held returns the number of requests currently held by Hang.
func (v *View) Held() int { return v.s.held }

// Requests returns the retained journal entries with Seq > after.
func (v *View) Requests(after uint64) []Request { return v.s.journal.sinceLocked(after) }

// Await blocks until pred returns true, checking it now and after every
// change of the model or the journal, or until ctx is done. pred runs with
// the model locked (see View).
func (s *Server) Await(ctx context.Context, pred func(*View) bool) error {
	v := &View{s}
	return s.changed.Await(ctx, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return pred(v)
	})
}

// AwaitDevice waits until device uuid exists and pred holds for it as the
// protocol shows it (status, is_online, is_on__commit are what gateways
// PATCHed), and returns it.
func (s *Server) AwaitDevice(ctx context.Context, uuid string, pred func(cloudapi.Device) bool) (cloudapi.Device, error) {
	var got cloudapi.Device
	var seen bool
	err := s.Await(ctx, func(v *View) bool {
		d, ok := v.CloudDevice(uuid)
		if !ok {
			return false
		}
		got, seen = d, true
		return pred == nil || pred(d)
	})
	if err != nil {
		if !seen {
			return cloudapi.Device{}, fmt.Errorf("awaiting device %s: it does not exist: %w", uuid, err)
		}
		return got, fmt.Errorf("awaiting device %s: last seen %+v: %w", uuid, got, err)
	}
	return got, nil
}

// AwaitLogs waits until at least n log lines were received for device uuid
// and returns the retained ones.
func (s *Server) AwaitLogs(ctx context.Context, uuid string, n int) ([]cloudapi.LogLine, error) {
	var lines []cloudapi.LogLine
	have := 0
	err := s.Await(ctx, func(v *View) bool {
		d := s.devices[uuid]
		if d == nil {
			return false
		}
		have = d.logCount
		if have < n {
			return false
		}
		lines = s.logsLocked(d)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("awaiting %d log lines of %s: have %d: %w", n, uuid, have, err)
	}
	return lines, nil
}

// AwaitRequest waits until the journal holds a request for which pred is
// true (requests already journaled count: filter on Seq, see RequestSeq, to
// wait for a later one) and returns the first such.
func (s *Server) AwaitRequest(ctx context.Context, pred func(Request) bool) (Request, error) {
	var after uint64
	var found Request
	err := s.Await(ctx, func(v *View) bool {
		for _, r := range v.Requests(after) {
			after = r.Seq
			if pred(r) {
				found = r
				return true
			}
		}
		return false
	})
	if err != nil {
		return Request{}, fmt.Errorf("awaiting a request: %d seen: %w", after, err)
	}
	return found, nil
}
