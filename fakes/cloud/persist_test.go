package cloud

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/prometheus/client_golang/prometheus"
)

// populateAll gives c a model with every kind of thing the state file keeps:
// two gateways of one gateway app, an app with variables and two releases,
// a device provisioned through the protocol that reported a status and
// logged, one created through the control API with its own variables, and
// a deleted device (whose id stays taken).
func populateAll(t *testing.T, c *testCloud) fixture {
	t.Helper()
	f := c.fixture(t)
	_, err := c.CreateGateway(GatewaySpec{AppID: f.gw.AppID, Name: "second"})
	mustNoErr(t, err)
	mustNoErr(t, c.SetAppConfig(f.app.ID, map[string]string{"C": "1"}))
	mustNoErr(t, c.SetAppEnv(f.app.ID, map[string]string{"E": "app"}))
	for _, d := range []byte{'a', 'b'} {
		_, err := c.PushRelease(testCtx(t), f.app.ID, ReleaseSpec{Image: fakeImage("apps/x", d)})
		mustNoErr(t, err)
	}
	if r := c.call(t, "POST", cloudapi.PathDevices, f.gw.APIKey, provisionBody(f.app.ID, f.gw.DeviceID, hexOf('7'))); r.status != 201 {
		t.Fatalf("provision: %d %s", r.status, r.body)
	}
	d, err := c.Device(hexOf('7'))
	mustNoErr(t, err)
	if r := c.call(t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, d.ID), f.gw.APIKey, strings.NewReader(`{"status":"Idle","is_online":true,"is_on__commit":"`+strings.Repeat("c", 40)+`"}`)); r.status != 200 {
		t.Fatalf("patch: %d %s", r.status, r.body)
	}
	logs := `{"uuid":"` + hexOf('7') + `","message":"hello","timestamp":1700000000000,"isSystem":false}` + "\n"
	if r := c.call(t, "POST", logsPath(f.gw.UUID), f.gw.APIKey, strings.NewReader(logs)); r.status/100 != 2 {
		t.Fatalf("logs: %d %s", r.status, r.body)
	}
	created, err := c.CreateDevice(DeviceSpec{AppID: f.app.ID, Gateway: f.gw.UUID})
	mustNoErr(t, err)
	mustNoErr(t, c.SetDeviceEnv(created.UUID, map[string]string{"E": "device"}))
	gone, err := c.CreateDevice(DeviceSpec{AppID: f.app.ID, Gateway: f.gw.UUID})
	mustNoErr(t, err)
	mustNoErr(t, c.DeleteDevice(gone.UUID))
	return f
}

// view is everything the control API and the protocol show of a model.
type view struct {
	gateways []Gateway
	apps     []App
	releases []Release
	devices  []DeviceInfo
	logs     []cloudapi.LogLine
	state    string
	etag     string
}

func viewOf(t *testing.T, c *testCloud, f fixture) view {
	t.Helper()
	v := view{gateways: c.Gateways(), apps: c.Apps(), devices: c.Devices(DeviceFilter{})}
	var err error
	v.releases, err = c.Releases(f.app.ID)
	mustNoErr(t, err)
	v.logs, err = c.Logs(hexOf('7'))
	mustNoErr(t, err)
	body, etag, err := c.State(f.gw.UUID)
	mustNoErr(t, err)
	v.state, v.etag = string(body), etag
	return v
}

func TestAStateFileKeepsTheModelAcrossARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.json")
	c1 := newTestCloud(t, Options{StateFile: path, AdminToken: ""})
	f := populateAll(t, c1)
	before := viewOf(t, c1, f)
	mustNoErr(t, c1.Close())

	c2 := newTestCloud(t, Options{StateFile: path, Seed: 7})
	t.Cleanup(func() { c2.Close() })
	after := viewOf(t, c2, f)
	for _, part := range []struct {
		name          string
		before, after any
	}{
		{"gateways", before.gateways, after.gateways}, {"apps", before.apps, after.apps},
		{"releases", before.releases, after.releases}, {"devices", before.devices, after.devices},
		{"logs", before.logs, after.logs}, {"state document", before.state, after.state}, {"etag", before.etag, after.etag},
	} {
		// As JSON: what a client sees (and times without their monotonic
		// clock readings).
		b, _ := json.Marshal(part.before)
		a, _ := json.Marshal(part.after)
		if string(a) != string(b) || len(b) < 3 {
			t.Errorf("after a restart the %s differ:\nbefore %s\nafter  %s", part.name, b, a)
		}
	}
	if c2.AdminToken() != c1.AdminToken() || c2.Seed() != c1.Seed() {
		t.Errorf("admin token and seed: got %s %d, want %s %d", c2.AdminToken(), c2.Seed(), c1.AdminToken(), c1.Seed())
	}
	// The gateway's key still works, and its cached ETag still matches.
	if r := c2.call(t, "GET", statePath(f.gw.UUID), f.gw.APIKey, nil, "If-None-Match", before.etag); r.status != 304 {
		t.Errorf("state with the old ETag: got %d, want 304", r.status)
	}
	// What the restarted cloud makes next collides with nothing from
	// before: the random source and the id counters went on.
	taken := map[string]bool{}
	ids := map[int64]bool{}
	for _, d := range before.devices {
		taken[d.UUID], ids[d.ID] = true, true
	}
	for _, g := range before.gateways {
		taken[g.UUID], ids[g.DeviceID] = true, true
	}
	for range 3 {
		d, err := c2.CreateDevice(DeviceSpec{AppID: f.app.ID, Gateway: f.gw.UUID})
		mustNoErr(t, err)
		if taken[d.UUID] || ids[d.ID] {
			t.Errorf("new device %s (id %d) reuses a uuid or id of before the restart", d.UUID, d.ID)
		}
		taken[d.UUID], ids[d.ID] = true, true
	}
	if maxID := before.devices[len(before.devices)-1].ID; ids[maxID+1] {
		t.Errorf("the deleted device's id %d was reused", maxID+1)
	}
	r, err := c2.PushRelease(testCtx(t), f.app.ID, ReleaseSpec{Image: fakeImage("apps/x", 'c')})
	mustNoErr(t, err)
	for _, old := range before.releases {
		if r.ID == old.ID || r.Commit == old.Commit {
			t.Errorf("new release %+v repeats %+v", r, old)
		}
	}
	a, err := c2.CreateApp(AppSpec{Gateway: f.gw.UUID})
	mustNoErr(t, err)
	for _, old := range before.apps {
		if a.ID == old.ID || a.ID == f.gw.AppID {
			t.Errorf("new app id %d is taken", a.ID)
		}
	}
}

// A change reaches the file within the save interval, without Close: a
// cloud killed after that loses nothing.
func TestAChangeReachesTheStateFileWithoutClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.json")
	c1 := newTestCloud(t, Options{StateFile: path, SaveInterval: 10 * time.Millisecond})
	t.Cleanup(func() { c1.Close() })
	gw, err := c1.CreateGateway(GatewaySpec{})
	mustNoErr(t, err)
	awaitInFile(t, path, gw.UUID)
	c2 := newTestCloud(t, Options{StateFile: path})
	t.Cleanup(func() { c2.Close() })
	if _, err := c2.Gateway(gw.UUID); err != nil {
		t.Errorf("a cloud started from the file does not know the gateway: %v", err)
	}
}

// awaitInFile waits until the file at path holds want.
func awaitInFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(want)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not reach %s within 10s", want, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A save that fails (here: its directory is gone) is tried again without
// waiting for another change.
func TestAFailedSaveIsRetried(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	mustNoErr(t, os.Mkdir(dir, 0o755))
	path := filepath.Join(dir, "cloud.json")
	c := newTestCloud(t, Options{StateFile: path, SaveInterval: 10 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	mustNoErr(t, os.RemoveAll(dir))
	gw := c.gateway(t)
	time.Sleep(50 * time.Millisecond) // some saves fail meanwhile
	mustNoErr(t, os.Mkdir(dir, 0o755))
	awaitInFile(t, path, gw.UUID)
}

func TestAnUnchangedModelIsNotWrittenAgain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.json")
	c1 := newTestCloud(t, Options{StateFile: path})
	populateAll(t, c1)
	mustNoErr(t, c1.Close())
	c2 := newTestCloud(t, Options{StateFile: path})
	t.Cleanup(func() { c2.Close() })
	st1, err := os.Stat(path)
	mustNoErr(t, err)
	mustNoErr(t, c2.Save())
	st2, err := os.Stat(path)
	mustNoErr(t, err)
	if !os.SameFile(st1, st2) {
		t.Error("Save of an unchanged model replaced the file")
	}
	_, err = c2.CreateGateway(GatewaySpec{})
	mustNoErr(t, err)
	mustNoErr(t, c2.Save())
	st3, err := os.Stat(path)
	mustNoErr(t, err)
	if os.SameFile(st2, st3) {
		t.Error("Save of a changed model did not replace the file")
	}
}

func TestABadStateFileIsRefusedAndLeftAsItIs(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	c := newTestCloud(t, Options{StateFile: good})
	populateAll(t, c)
	mustNoErr(t, c.Close())
	b, err := os.ReadFile(good)
	mustNoErr(t, err)
	for name, content := range map[string]string{
		"not JSON":          "{not json",
		"an unknown field":  strings.Replace(string(b), `"version":1`, `"version":1,"surprise":true`, 1),
		"another version":   strings.Replace(string(b), `"version":1`, `"version":99`, 1),
		"a dangling app id": strings.Replace(string(b), `"parentApp":1`, `"parentApp":999`, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if content == string(b) {
				t.Fatal("the corruption did not apply")
			}
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
			mustNoErr(t, os.WriteFile(path, []byte(content), 0o600))
			if _, err := New(Options{StateFile: path}); err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("New: got %v, want an error naming %s", err, path)
			}
			after, err := os.ReadFile(path)
			mustNoErr(t, err)
			if string(after) != content {
				t.Error("the refused file was changed")
			}
		})
	}
	if _, err := New(Options{StateFile: filepath.Join(dir, "no-such-dir", "cloud.json")}); err == nil {
		t.Error("New with a state file in a missing directory: got nil, want an error")
	}
}

// Saves encode the model after releasing its lock: changes made meanwhile
// (variables changed in place, reports, pushes) race with nothing (run with
// -race), and the last save still holds the last model.
func TestSavesWhileTheModelChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cloud.json")
	c1 := newTestCloud(t, Options{StateFile: path, SaveInterval: time.Hour})
	f := populateAll(t, c1)
	created, err := c1.CreateDevice(DeviceSpec{AppID: f.app.ID, Gateway: f.gw.UUID})
	mustNoErr(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			mustNoErr(t, c1.SetDeviceEnv(created.UUID, map[string]string{"E": fmt.Sprint(i)}))
			mustNoErr(t, c1.SetAppConfig(f.app.ID, map[string]string{"C": fmt.Sprint(i)}))
		}
	}()
	for range 20 {
		mustNoErr(t, c1.Save())
	}
	<-done
	before := viewOf(t, c1, f)
	mustNoErr(t, c1.Close())
	c2 := newTestCloud(t, Options{StateFile: path})
	t.Cleanup(func() { c2.Close() })
	after := viewOf(t, c2, f)
	if before.state != after.state || before.etag != after.etag {
		t.Errorf("after a restart the state document differs:\nbefore %s\nafter  %s", before.state, after.state)
	}
}

// BenchmarkSaveAfterAChange10k is one Save of a model with 10,000 devices
// after a device reported a new status: the time a change costs the
// cloud's lock and the disk, at most once per save interval.
func BenchmarkSaveAfterAChange10k(b *testing.B) {
	path := filepath.Join(b.TempDir(), "cloud.json")
	s, err := New(Options{Seed: 1, StateFile: path, SaveInterval: time.Hour, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	gw, err := s.CreateGateway(GatewaySpec{})
	if err != nil {
		b.Fatal(err)
	}
	populate(b, s, gw, 3, 10_000)
	uuid := s.Devices(DeviceFilter{})[0].UUID
	for i := 0; b.Loop(); i++ {
		s.mu.Lock()
		s.devices[uuid].status = fmt.Sprint("s", i)
		s.mu.Unlock()
		if err := s.Save(); err != nil {
			b.Fatal(err)
		}
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Size())/(1<<20), "file-MiB")
}

// The state file's bytes are json.Marshal's of the snapshot, devices
// encoded by hand or not: strings that need escaping (HTML characters,
// quotes, control characters, invalid UTF-8), empty and missing maps,
// reported commits and logs.
func TestTheStateFileIsJSONMarshalsSnapshot(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := populateAll(t, c)
	for _, name := range []string{"<b>&amp;</b>", "quote\" back\\ nl\n \x01 bad\xff \u2028", ""} {
		d, err := c.CreateDevice(DeviceSpec{AppID: f.app.ID, Gateway: f.gw.UUID, Name: name, Environment: map[string]string{"E": name + "<>&"}})
		mustNoErr(t, err)
		mustNoErr(t, c.SetDeviceConfig(d.UUID, map[string]string{"K": name}))
	}
	c.mu.Lock()
	sn, err := c.snapshotLocked()
	for _, d := range c.devices {
		d.env = nil // as a model restored from an older file may hold
		break
	}
	sn2, err2 := c.snapshotLocked()
	c.mu.Unlock()
	mustNoErr(t, err)
	mustNoErr(t, err2)
	for _, s := range []*snapshot{sn, sn2, {Version: 1}} {
		want, err := json.Marshal(s)
		mustNoErr(t, err)
		got, err := encodeSnapshotJSON(s)
		mustNoErr(t, err)
		if !bytes.Equal(got, want) {
			t.Errorf("encoded snapshot differs from json.Marshal's:\ngot  %s\nwant %s", got, want)
		}
	}
}

// A provisioned device holds no variables of its own until it is given
// some, and shows and saves empty ones as {}; setting one works as before.
func TestAProvisionedDeviceHoldsNoEmptyVariables(t *testing.T) {
	c := newTestCloud(t, Options{})
	f := c.fixture(t)
	if r := c.call(t, "POST", cloudapi.PathDevices, f.gw.APIKey, provisionBody(f.app.ID, f.gw.DeviceID, hexOf('8'))); r.status != 201 {
		t.Fatalf("provision: %d %s", r.status, r.body)
	}
	c.mu.Lock()
	d := c.devices[hexOf('8')]
	env, cfg := d.env, d.config
	sn, err := c.snapshotLocked()
	c.mu.Unlock()
	mustNoErr(t, err)
	if env != nil || cfg != nil {
		t.Errorf("a provisioned device holds env %v and config %v, want none", env, cfg)
	}
	b, err := encodeSnapshotJSON(sn)
	mustNoErr(t, err)
	if bytes.Contains(b, []byte(`"environment":null`)) || bytes.Contains(b, []byte(`"config":null`)) {
		t.Errorf("the state file shows a device's empty variables as null: %s", b)
	}
	info, err := c.Device(hexOf('8'))
	mustNoErr(t, err)
	if info.Environment == nil || len(info.Environment) != 0 || info.Config == nil {
		t.Errorf("the device shows env %#v and config %#v, want empty maps", info.Environment, info.Config)
	}
	mustNoErr(t, c.SetDeviceEnv(hexOf('8'), map[string]string{"E": "1"}))
	info, err = c.Device(hexOf('8'))
	mustNoErr(t, err)
	if info.Environment["E"] != "1" {
		t.Errorf("after setting E=1 the device shows env %v", info.Environment)
	}
}
