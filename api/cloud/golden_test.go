package cloud_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/depharness/depharness/api/cloud"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json with the re-encoded examples")

// The examples under testdata/ are documents of the cloud protocol
// (CONTRACT.md, "Cloud protocol"): a target state with an app that has a
// release and one that has none yet, a device with and one without a
// restart counter (CLOUD-STATE); the provision request and the device it
// returns (CLOUD-PROV); the device lookup (CLOUD-GET); a patch
// (CLOUD-PATCH); a log-stream line (CLOUD-LOGS). Each is decoded into its
// wire type and encoded again; the result must be the same JSON document
// (compared as generic JSON) except for what a case's expect states. The
// re-encoded bytes are pinned in testdata/<name>.golden.json (go test -run
// Golden -update rewrites them).

type goldenCase struct {
	name      string
	file      string
	roundTrip func([]byte) ([]byte, error)
	expect    func(doc any) any
}

func roundTrip[T any](data []byte) ([]byte, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, err
	}
	return json.MarshalIndent(v, "", "  ")
}

// dropCloudOnlyFields: the cloud's device resource carries many more fields
// than the protocol uses (created_at here); cloud.Device keeps only the
// ones it names, so they are dropped on re-encoding.
func dropCloudOnlyFields(doc any) any {
	delete(doc.(map[string]any), "created_at")
	return doc
}

func TestGoldenCloudProtocolExamples(t *testing.T) {
	cases := []goldenCase{
		{name: "target state keeps apps with and without a release and devices with and without restart", file: "target-state.json", roundTrip: roundTrip[cloud.TargetState]},
		{name: "provision request keeps every field", file: "provision-request.json", roundTrip: roundTrip[cloud.ProvisionRequest]},
		{name: "provisioned device keeps the protocol's fields and drops the rest", file: "device.json", roundTrip: roundTrip[cloud.Device], expect: dropCloudOnlyFields},
		{name: "device lookup keeps the d array", file: "device-list.json", roundTrip: roundTrip[cloud.DeviceList]},
		{name: "device patch keeps status is_online is_on__commit", file: "device-patch.json", roundTrip: roundTrip[cloud.DevicePatch]},
		{name: "log stream line keeps uuid message timestamp isSystem", file: "log-line.json", roundTrip: roundTrip[cloud.LogLine]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runGolden(t, tc) })
	}
}

// TestGoldenTargetStateFields checks the decoded values of the target state
// example, so that a tag typo cannot hide behind a symmetric round trip.
func TestGoldenTargetStateFields(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "target-state.json"))
	if err != nil {
		t.Fatal(err)
	}
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

func runGolden(t *testing.T, tc goldenCase) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", tc.file))
	if err != nil {
		t.Fatal(err)
	}
	out, err := tc.roundTrip(data)
	if err != nil {
		t.Fatalf("decoding %s: %v", tc.file, err)
	}
	var want any
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("example %s is not JSON: %v", tc.file, err)
	}
	if tc.expect != nil {
		want = tc.expect(want)
	}
	var got any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("re-encoded %s is not JSON: %v", tc.file, err)
	}
	if !reflect.DeepEqual(got, want) {
		wantJSON, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("re-encoded %s:\ngot  %s\nwant %s", tc.file, out, wantJSON)
	}

	golden := filepath.Join("testdata", strings.TrimSuffix(tc.file, ".json")+".golden.json")
	out = append(out, '\n')
	if *update {
		if err := os.WriteFile(golden, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	pinned, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	if !bytes.Equal(out, pinned) {
		t.Errorf("re-encoded %s differs from %s:\ngot  %s\nwant %s", tc.file, golden, out, pinned)
	}
}
