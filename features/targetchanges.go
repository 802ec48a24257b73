package features

import (
	"net/http"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
)

// The target changes a scenario made, from which timing bounds are measured.

// targetChange is a change of a target in the cloud that the scenario made:
// it became visible in the cloud's state at some time between from and to.
type targetChange struct{ from, to time.Time }

// noteTargetChange records that the scenario changed a target in the cloud
// between from and now.
func (st *scenario) noteTargetChange(from time.Time) {
	st.targetChanges = append(st.targetChanges, targetChange{from: from, to: time.Now()})
}

// noteNewDevice records a device appearing in the target: through the
// supervisor's provisioning call, it became visible while that call was
// being answered (the cloud's journal has its start); created in the
// cloud, just now.
func (st *scenario) noteNewDevice() {
	from := time.Now()
	reqs := st.world.Cloud.Requests(0)
	last := st.lastChangeTo()
	for i := len(reqs) - 1; i >= 0; i-- {
		r := reqs[i]
		if r.Route == cloud.RouteProvision && r.Status == http.StatusCreated && r.Gateway == st.gateway.UUID && r.Time.After(last) {
			from = r.Time
			break
		}
	}
	st.noteTargetChange(from)
}

// lastChangeTo is when the scenario's last target change was complete
// (zero if none).
func (st *scenario) lastChangeTo() time.Time {
	if n := len(st.targetChanges); n > 0 {
		return st.targetChanges[n-1].to
	}
	return time.Time{}
}
