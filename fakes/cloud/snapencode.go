package cloud

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/depharness/depharness/internal/jsonstr"
)

// The state file's devices, encoded by hand: with 100,000 devices
// encoding/json's reflection took most of each save. The bytes are those
// json.Marshal writes for the snapshot (a test holds them equal), so that a
// file and its hash do not depend on which of the two wrote it.

// encodeSnapshotJSON is json.Marshal(sn), with sn.Devices encoded by hand.
func encodeSnapshotJSON(sn *snapshot) ([]byte, error) {
	devices := sn.Devices
	head := *sn
	head.Devices = nil
	b, err := json.Marshal(&head)
	if err != nil {
		return nil, err
	}
	// Devices is the last field: the head ends with "devices":null}.
	const tail = `"devices":null}`
	if !bytes.HasSuffix(b, []byte(tail)) {
		return nil, errors.New("state file: the snapshot's devices are not its last field")
	}
	if devices == nil {
		return b, nil
	}
	b = b[:len(b)-len("null}")]
	b = slices.Grow(b, 320*len(devices)) // a device without logs takes about 250 bytes
	b = append(b, '[')
	for i := range devices {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = appendSnapDevice(b, &devices[i]); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

// appendSnapDevice appends d as json.Marshal writes a snapDevice.
func appendSnapDevice(b []byte, d *snapDevice) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, d.ID, 10)
	b = append(b, `,"uuid":`...)
	b = appendJSONString(b, d.UUID)
	b = append(b, `,"name":`...)
	b = appendJSONString(b, d.Name)
	b = append(b, `,"deviceType":`...)
	b = appendJSONString(b, d.DeviceType)
	b = append(b, `,"appId":`...)
	b = strconv.AppendInt(b, d.AppID, 10)
	if d.Gateway != "" {
		b = append(b, `,"gateway":`...)
		b = appendJSONString(b, d.Gateway)
	}
	b = append(b, `,"environment":`...)
	b = appendStringMap(b, d.Environment)
	b = append(b, `,"config":`...)
	b = appendStringMap(b, d.Config)
	b = append(b, `,"restart":`...)
	b = strconv.AppendInt(b, d.Restart, 10)
	b = append(b, `,"registeredAt":`...)
	if y := d.RegisteredAt.Year(); y < 0 || y > 9999 {
		return nil, errors.New("state file: a registration time outside years 0 to 9999")
	}
	// As time.Time's MarshalJSON writes it.
	b = d.RegisteredAt.AppendFormat(b, `"`+time.RFC3339Nano+`"`)
	b = append(b, `,"origin":`...)
	b = appendJSONString(b, d.Origin)
	b = append(b, `,"status":`...)
	b = appendJSONString(b, d.Status)
	b = append(b, `,"isOnline":`...)
	b = strconv.AppendBool(b, d.IsOnline)
	b = append(b, `,"isOnCommit":`...)
	if d.IsOnCommit == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *d.IsOnCommit)
	}
	b = append(b, `,"logs":`...)
	if d.Logs == nil {
		b = append(b, "null"...)
	} else {
		logs, err := json.Marshal(d.Logs)
		if err != nil {
			return nil, err
		}
		b = append(b, logs...)
	}
	b = append(b, `,"logCount":`...)
	b = strconv.AppendInt(b, int64(d.LogCount), 10)
	return append(b, '}'), nil
}

// appendStringMap appends m as json.Marshal writes it: keys sorted, nil as
// null.
func appendStringMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	return appendVars(b, m, nil, appendJSONString)
}

// appendJSONString appends s as json.Marshal writes a string: as jsonstr
// does, and <, > and & escaped too (HTML escaping on).
func appendJSONString(b []byte, s string) []byte {
	if !strings.ContainsAny(s, "<>&") {
		return jsonstr.Append(b, s)
	}
	start := len(b)
	b = jsonstr.Append(b, s)
	lit := append([]byte(nil), b[start:]...)
	b = b[:start]
	for _, c := range lit {
		switch c {
		case '<':
			b = append(b, `\u003c`...)
		case '>':
			b = append(b, `\u003e`...)
		case '&':
			b = append(b, `\u0026`...)
		default:
			b = append(b, c)
		}
	}
	return b
}
