package cloudclient

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/depharness/depharness/api/cloud"
)

// Decoding the target state. The whole document comes with every change of
// any device (and, while devices provisioned here are not yet in a target,
// with every poll), so decoding its devices dominated a poll with many
// devices. The devices object is read as raw values, and a device whose
// bytes equal those of the previous document is not decoded again.

// rawTargetState is cloud.TargetState with the devices left undecoded (the
// same fields and tags, so that the same documents decode).
type rawTargetState struct {
	Local     json.RawMessage `json:"local"`
	Dependent struct {
		Apps    map[string]cloud.DependentApp `json:"apps"`
		Devices map[string]json.RawMessage    `json:"devices"`
	} `json:"dependent"`
}

// stateDecoder decodes target states, keeping the devices of the last one.
type stateDecoder struct {
	mu      sync.Mutex
	devices map[string]decodedDevice // by uuid
}

// decodedDevice is a device's raw value and what it decoded to.
type decodedDevice struct {
	raw []byte
	dev cloud.DependentDevice
}

// decode reads one target state from r (at most limit bytes). The maps of
// the devices it returns may be those of an earlier state's: callers must
// not modify them.
func (sd *stateDecoder) decode(r io.Reader, limit int64) (*cloud.TargetState, error) {
	var raw rawTargetState
	if err := decodeJSON(r, limit, &raw); err != nil {
		return nil, err
	}
	st := &cloud.TargetState{Local: raw.Local, Dependent: cloud.Dependent{Apps: raw.Dependent.Apps}}
	if raw.Dependent.Devices == nil {
		return st, nil
	}
	sd.mu.Lock()
	defer sd.mu.Unlock()
	devices := make(map[string]cloud.DependentDevice, len(raw.Dependent.Devices))
	next := make(map[string]decodedDevice, len(raw.Dependent.Devices))
	for uuid, b := range raw.Dependent.Devices {
		if prev, ok := sd.devices[uuid]; ok && bytes.Equal(prev.raw, b) {
			devices[uuid], next[uuid] = prev.dev, prev
			continue
		}
		var d cloud.DependentDevice
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("device %q: %w", uuid, err)
		}
		devices[uuid], next[uuid] = d, decodedDevice{raw: b, dev: d}
	}
	sd.devices = next
	st.Dependent.Devices = devices
	return st, nil
}
