package cloud

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestStateDocumentMatchesTheGoldenFile pins the wire format of the target
// state (CONTRACT.md CLOUD-STATE) byte for byte: run with -update after an
// intended change and review the diff.
func TestStateDocumentMatchesTheGoldenFile(t *testing.T) {
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := newTestCloud(t, Options{Seed: 1, Now: func() time.Time { return epoch }})
	gw, err := c.CreateGateway(GatewaySpec{UUID: hexOf('0'), DeviceID: 100, APIKey: "k"})
	mustNoErr(t, err)
	a, err := c.CreateApp(AppSpec{Gateway: gw.UUID, Name: "thermostats", Config: map[string]string{"RATE": "10"}, Environment: map[string]string{"LEVEL": "info"}})
	mustNoErr(t, err)
	_, err = c.CreateApp(AppSpec{Gateway: gw.UUID, Name: "no-release-yet"})
	mustNoErr(t, err)
	_, err = c.PushRelease(testCtx(t), a.ID, ReleaseSpec{Image: fakeImage("apps/2", 'd'), Commit: "0123456789abcdef0123456789abcdef01234567"})
	mustNoErr(t, err)
	d, err := c.CreateDevice(DeviceSpec{AppID: a.ID, UUID: hexOf('1'), Name: "kitchen", Environment: map[string]string{"LEVEL": "debug"}})
	mustNoErr(t, err)
	_, err = c.CreateDevice(DeviceSpec{AppID: a.ID, UUID: hexOf('2'), Name: "hall", Config: map[string]string{"RATE": "1"}})
	mustNoErr(t, err)
	_, err = c.RestartDevice(d.UUID)
	mustNoErr(t, err)

	body, _, err := c.State(gw.UUID)
	mustNoErr(t, err)
	var pretty bytes.Buffer
	mustNoErr(t, json.Indent(&pretty, body, "", "  "))
	pretty.WriteByte('\n')
	golden := filepath.Join("testdata", "state.golden.json")
	if *update {
		mustNoErr(t, os.MkdirAll("testdata", 0o755))
		mustNoErr(t, os.WriteFile(golden, pretty.Bytes(), 0o644))
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("state document differs from %s:\ngot\n%s\nwant\n%s", golden, pretty.Bytes(), want)
	}
}
