package gateway

// Observer is told what the gateway does, for a live view of its fleet
// (sim/fleetview). The gateway calls it synchronously from its own
// goroutines, sometimes with its lock held: a method must return quickly,
// must not block and must not call the gateway. A device is named by its
// fleet index (fleet.Device.Index), -1 when the gateway does not manage it
// (or, for errors, when no one device is concerned).
type Observer interface {
	// DeviceManaged: the device was provisioned, or adopted, as uuid in
	// dependent app appID.
	DeviceManaged(index int, uuid string, appID int64)
	// DeviceForgotten: the device was deleted (a delete hook, or a 410 or
	// 404 answer to one of its reports).
	DeviceForgotten(index int, uuid string)
	// HookReceived: a hook of kind update, restart, delete (or unknown, a
	// request to no hook route) was answered status; commit is an update
	// hook's target commit.
	HookReceived(kind string, index int, status int, commit string)
	// Reported: a state report of the device was accepted.
	Reported(index int)
	// Failed: an operation (adopt, provision, download, flash, report,
	// log) failed; the gateway retries what can be retried.
	Failed(op string, index int, err error)
}

type nopObserver struct{}

func (nopObserver) DeviceManaged(int, string, int64)      {}
func (nopObserver) DeviceForgotten(int, string)           {}
func (nopObserver) HookReceived(string, int, int, string) {}
func (nopObserver) Reported(int)                          {}
func (nopObserver) Failed(string, int, error)             {}

// failed counts a failed operation and tells the Observer.
func (g *Gateway) failed(op string, index int, err error) {
	g.metrics.Errors.WithLabelValues(op).Inc()
	g.opts.Observer.Failed(op, index, err)
}
