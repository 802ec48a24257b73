package cloud_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/api/internal/golden"
)

// The examples under testdata/ are documents of the cloud protocol
// (CONTRACT.md, "Cloud protocol"): a target state with an app that has a
// release and one that has none yet, a device with and one without a
// restart counter (CLOUD-STATE); the provision request and the device it
// returns (CLOUD-PROV); the device lookup (CLOUD-GET); a patch
// (CLOUD-PATCH); a log-stream line (CLOUD-LOGS). Each is decoded into its
// wire type and encoded again; the result must be the same JSON document
// (compared as generic JSON) except for what a case's Expect states. The
// re-encoded bytes are pinned in testdata/<name>.golden.json (go test -run
// Golden -update rewrites them).

// dropCloudOnlyFields: the cloud's device resource carries many more fields
// than the protocol uses (created_at here); cloud.Device keeps only the
// ones it names, so they are dropped on re-encoding.
func dropCloudOnlyFields(doc any) any {
	delete(doc.(map[string]any), "created_at")
	return doc
}

func TestGoldenCloudProtocolExamples(t *testing.T) {
	cases := []golden.Case{
		{Name: "target state keeps apps with and without a release and devices with and without restart", File: "target-state.json", RoundTrip: golden.RoundTrip[cloud.TargetState]},
		{Name: "provision request keeps every field", File: "provision-request.json", RoundTrip: golden.RoundTrip[cloud.ProvisionRequest]},
		{Name: "provisioned device keeps the protocol's fields and drops the rest", File: "device.json", RoundTrip: golden.RoundTrip[cloud.Device], Expect: dropCloudOnlyFields},
		{Name: "device lookup keeps the d array", File: "device-list.json", RoundTrip: golden.RoundTrip[cloud.DeviceList]},
		{Name: "device patch keeps status is_online is_on__commit", File: "device-patch.json", RoundTrip: golden.RoundTrip[cloud.DevicePatch]},
		{Name: "log stream line keeps uuid message timestamp isSystem", File: "log-line.json", RoundTrip: golden.RoundTrip[cloud.LogLine]},
	}
	golden.RunAll(t, cases)
}

// TestGoldenTargetStateFields checks the decoded values of the target state
// example, so that a tag typo cannot hide behind a symmetric round trip.
func TestGoldenTargetStateFields(t *testing.T) {
	data := golden.Example(t, "target-state.json")
	var s cloud.TargetState
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	app := s.Dependent.Apps["13015"]
	if app.Name != "edgeApp1" || app.ParentApp != 13000 || app.ReleaseID != 2001 ||
		app.Commit != "d43bea5e16658e653088ce4b9a91b6606c3c2a0d" || !strings.Contains(app.Image, "@sha256:") {
		t.Errorf("got app 13015 %+v, want edgeApp1 of parent 13000, release 2001 with its commit and a digest image", app)
	}
	if got := s.Dependent.Apps["13016"]; got.Commit != "" || got.Image != "" || got.Config == nil {
		t.Errorf("got app 13016 %+v, want no commit, no image, an empty non-nil config", got)
	}
	dev := s.Dependent.Devices["5ae8cf6e062c033ea38435498ad9b487"]
	if dev.Restart != 2 || dev.Apps["13015"].Environment["LOG_LEVEL"] != "debug" {
		t.Errorf("got device %+v, want restart 2 and LOG_LEVEL=debug for app 13015", dev)
	}
	if len(s.Local) == 0 {
		t.Error("got empty local section, want it kept as raw JSON")
	}
}
