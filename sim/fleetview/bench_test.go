package fleetview

import (
	"fmt"
	"testing"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/sim/fleet"
)

// rolloutModel is a model of n managed devices running c1 whose app's
// release is c2.
func rolloutModel(b testing.TB, n int) *Model {
	m, _ := newModel(b, n)
	for i := range n {
		m.DeviceManaged(i, fmt.Sprintf("%032x", i), 1+int64(i%2))
		m.FleetEvent(state(i, fleet.StateRunning, "c1"))
	}
	m.SetApps([]api.App{{ID: 1, Name: "one", Commit: "c2"}, {ID: 2, Name: "two", Commit: "c1"}})
	for i := range MaxErrors {
		m.Failed("flash", i, fmt.Errorf("flashing c2: flash failed: device did not confirm the write"))
	}
	m.Step()
	return m
}

// BenchmarkStep measures one published frame of a 10,000-device fleet: the
// server's CPU per update and the bytes sent per message (bytes/frame),
// for an idle fleet, a rollout step moving `changed` devices, and a step
// where every device changed (a snapshot).
func BenchmarkStep(b *testing.B) {
	const n = 10000
	for _, changed := range []int{0, 100, 1000, 3000, n} {
		b.Run(fmt.Sprintf("devices=%d/changed=%d", n, changed), func(b *testing.B) {
			m := rolloutModel(b, n)
			states := []fleet.State{fleet.StateDownloading, fleet.StateFlashing}
			var bytes int
			var kind string
			b.ReportAllocs()
			for k := 0; b.Loop(); k++ {
				for j := range changed {
					visit := k*changed + j // each visit of a device changes its state
					m.FleetEvent(state(visit%n, states[(visit/n)%2], "c2"))
				}
				var data []byte
				kind, _, data = m.Step()
				bytes = len(sseMessage(kind, 1, data))
			}
			b.Logf("%s of %d bytes", kind, bytes)
			b.ReportMetric(float64(bytes), "bytes/frame")
		})
	}
	b.Run(fmt.Sprintf("devices=%d/snapshot", n), func(b *testing.B) {
		m := rolloutModel(b, n)
		var bytes int
		for b.Loop() {
			m.snapCache = nil
			_, data := m.Snapshot()
			bytes = len(data)
		}
		b.ReportMetric(float64(bytes), "bytes/frame")
	})
}
