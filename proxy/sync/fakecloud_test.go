package sync

import (
	"context"
	"net/http"
	"testing"
	"time"

	fakecloud "github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/proxy/cloudclient"
	"github.com/depharness/depharness/proxy/store"
	"github.com/prometheus/client_golang/prometheus"
)

// TestAgainstTheFakeCloud drives the syncer with the project's fake cloud,
// through the real cloud client: the wire formats of both sides must agree.
func TestAgainstTheFakeCloud(t *testing.T) {
	ctx := context.Background()
	fc, err := fakecloud.New(fakecloud.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	srv := testkit.Server(t, fc)
	gw, err := fc.CreateGateway(fakecloud.GatewaySpec{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := fc.CreateGateway(fakecloud.GatewaySpec{})
	if err != nil {
		t.Fatal(err)
	}
	app, err := fc.CreateApp(fakecloud.AppSpec{Gateway: gw.UUID, Environment: map[string]string{"APPVAR": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	app2, err := fc.CreateApp(fakecloud.AppSpec{Gateway: gw.UUID})
	if err != nil {
		t.Fatal(err)
	}
	otherApp, err := fc.CreateApp(fakecloud.AppSpec{Gateway: other.UUID})
	if err != nil {
		t.Fatal(err)
	}
	rel, err := fc.PushRelease(ctx, app.ID, fakecloud.ReleaseSpec{Image: img})
	if err != nil {
		t.Fatal(err)
	}
	var uuids []string
	for _, a := range []int64{app.ID, app.ID, app2.ID} {
		d, err := fc.CreateDevice(fakecloud.DeviceSpec{AppID: a, Gateway: gw.UUID})
		if err != nil {
			t.Fatal(err)
		}
		uuids = append(uuids, d.UUID)
	}

	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cl, err := cloudclient.New(cloudclient.Options{BaseURL: srv.URL, GatewayUUID: gw.UUID, GatewayID: gw.DeviceID, APIKey: gw.APIKey})
	if err != nil {
		t.Fatal(err)
	}
	assets := newTestAssets()
	s, err := New(Options{Store: st, Cloud: cl, Assets: assets, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	devices := func() map[string]store.Device { return devicesByUUID(t, st) }
	poll := func() {
		t.Helper()
		if err := s.Poll(ctx); err != nil {
			t.Fatalf("Poll: %v", err)
		}
	}

	poll()
	ds := devices()
	if len(ds) != 3 {
		t.Fatalf("got %d devices, want 3", len(ds))
	}
	info, _ := fc.Device(uuids[0])
	if d := ds[uuids[0]]; d.CloudID != info.ID || d.AppID != app.ID || string(d.TargetEnvironment) != `{"APPVAR":"a"}` {
		t.Fatalf("got %+v, want cloud id %d, app %d, target environment APPVAR=a", d, info.ID, app.ID)
	}
	downloads, err := st.AppsNeedingDownload(ctx)
	if err != nil || len(downloads) != 1 || downloads[0].Commit != rel.Commit || downloads[0].Image != img {
		t.Fatalf("got downloads %+v (err %v), want app %d at %s", downloads, err, app.ID, rel.Commit)
	}

	// Unchanged state: the fake answers 304 to the ETag.
	seq := fc.RequestSeq()
	poll()
	var notModified bool
	for _, r := range fc.Requests(seq) {
		if r.Method == http.MethodGet && r.Status == http.StatusNotModified {
			notModified = true
		}
	}
	if !notModified {
		t.Fatalf("got requests %+v, want a 304 to the second poll", fc.Requests(seq))
	}

	// Restart, deletion, a move to another gateway, a whole app removed.
	// The devices were inserted by the first poll: a poll starting within
	// the same millisecond would take them as provisioned during it (not
	// marked).
	time.Sleep(2 * time.Millisecond)
	if _, err := fc.RestartDevice(uuids[0]); err != nil {
		t.Fatal(err)
	}
	if err := fc.DeleteDevice(uuids[1]); err != nil {
		t.Fatal(err)
	}
	if err := fc.DeleteApp(app2.ID); err != nil {
		t.Fatal(err)
	}
	poll()
	ds = devices()
	if d := ds[uuids[0]]; d.RestartRequested != d.RestartAcked+1 || d.MarkedForDelete {
		t.Fatalf("got %+v, want one restart request to acknowledge", d)
	}
	if !ds[uuids[1]].MarkedForDelete || !ds[uuids[2]].MarkedForDelete {
		t.Fatalf("got deleted device marked=%v, device of the removed app marked=%v, want both marked",
			ds[uuids[1]].MarkedForDelete, ds[uuids[2]].MarkedForDelete)
	}
	if err := fc.MoveDevice(uuids[0], otherApp.ID, other.UUID); err != nil {
		t.Fatal(err)
	}
	poll()
	if !devices()[uuids[0]].MarkedForDelete {
		t.Fatal("device moved to another gateway not marked")
	}
}
