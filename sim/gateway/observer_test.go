package gateway_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/depharness/depharness/sim/gateway"
)

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, a...))
}
func (r *recorder) DeviceManaged(i int, uuid string, app int64) {
	r.add("managed %d %s %d", i, uuid, app)
}
func (r *recorder) DeviceForgotten(i int, uuid string) { r.add("forgotten %d %s", i, uuid) }
func (r *recorder) HookReceived(kind string, i, status int, commit string) {
	r.add("hook %s %d %d %s", kind, i, status, commit)
}
func (r *recorder) Reported(i int) { r.add("reported %d", i) }
func (r *recorder) Failed(op string, i int, err error) {
	r.add("failed %s %d %v", op, i, err)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) has(pred func(string) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.events, pred)
}

func TestTheObserverIsToldWhatTheGatewayDoes(t *testing.T) {
	rec := &recorder{}
	wrong := strings.Repeat("ab", 32)
	w := start(t, setup{profile: quickProfile(2), policy: gateway.PolicyAccepted, observer: rec,
		expected: func(app int64, commit string) (string, bool) { return wrong, commit == "c1" }})
	index := map[string]int{}
	for i := range 2 {
		for _, u := range w.gw.UUIDs() {
			if d, _ := w.gw.Device(u); d.Index == i {
				index[u] = i
				if !rec.has(func(e string) bool { return e == fmt.Sprintf("managed %d %s %d", i, u, appID) }) {
					t.Errorf("no managed event for device %d (%s): %v", i, u, rec.list())
				}
			}
		}
	}
	uuids := w.gw.UUIDs()
	u0, u1 := uuids[0], uuids[1]
	w.hook(http.MethodPut, "/v1/devices/"+u0, target("c1"))
	w.awaitUpdate("the device reports Failed", u0, reportedFailed)
	w.hook(http.MethodDelete, "/v1/devices/"+u1, "")
	w.hook(http.MethodPut, "/v1/devices/nobody", target("c9"))
	for _, want := range []string{
		fmt.Sprintf("hook update %d 202 c1", index[u0]),
		fmt.Sprintf("reported %d", index[u0]),
		fmt.Sprintf("hook delete %d 200 ", index[u1]),
		fmt.Sprintf("forgotten %d %s", index[u1], u1),
		"hook update -1 404 c9",
	} {
		if !rec.has(func(e string) bool { return e == want }) {
			t.Errorf("no %q among %v", want, rec.list())
		}
	}
	if !rec.has(func(e string) bool {
		return strings.HasPrefix(e, fmt.Sprintf("failed flash %d ", index[u0])) && strings.Contains(e, "checksum mismatch")
	}) {
		t.Errorf("no failed flash with a checksum mismatch among %v", rec.list())
	}
}
