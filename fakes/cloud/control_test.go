package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/internal/testkit"
)

func (c *testCloud) client() *ControlClient {
	return &ControlClient{BaseURL: c.url, Token: c.AdminToken()}
}

func TestControlAPIDrivesTheModel(t *testing.T) {
	c := newTestCloud(t, Options{AdminToken: "admin"})
	cc := c.client()
	ctx := testCtx(t)

	gw, err := cc.CreateGateway(ctx, GatewaySpec{UUID: hexOf('0'), DeviceID: 500, APIKey: "gwkey", AppName: "fleet"})
	mustNoErr(t, err)
	if gw.UUID != hexOf('0') || gw.DeviceID != 500 || gw.APIKey != "gwkey" || gw.AppName != "fleet" || gw.AppID <= 0 {
		t.Fatalf("got gateway %+v, want the given identity in a new app named fleet", gw)
	}
	gen, err := cc.CreateGateway(ctx, GatewaySpec{AppID: gw.AppID})
	mustNoErr(t, err)
	if !uuidRe.MatchString(gen.UUID) || gen.APIKey == "" || gen.DeviceID <= 0 || gen.DeviceID == 500 || gen.AppID != gw.AppID {
		t.Fatalf("got generated gateway %+v, want uuid, key, a new device id, app %d", gen, gw.AppID)
	}
	a, err := cc.CreateApp(ctx, AppSpec{ParentApp: gw.AppID, Name: "thermo", Config: map[string]string{"A": "1"}})
	mustNoErr(t, err)
	if a.ParentApp != gw.AppID || a.Name != "thermo" || a.Release != nil {
		t.Fatalf("got app %+v, want thermo under %d without release", a, gw.AppID)
	}
	rel, err := cc.PushRelease(ctx, a.ID, ReleaseSpec{Image: fakeImage("apps/1", 'b'), Commit: strings.Repeat("c", 40)})
	mustNoErr(t, err)
	if rel.Commit != strings.Repeat("c", 40) || rel.ID <= 0 {
		t.Fatalf("got release %+v", rel)
	}
	d, err := cc.CreateDevice(ctx, DeviceSpec{AppID: a.ID, Gateway: gw.UUID, DeviceType: "esp32"})
	mustNoErr(t, err)
	if d.Gateway != gw.UUID || d.DeviceType != "esp32" || d.Origin != OriginCreated {
		t.Fatalf("got device %+v", d)
	}
	mustNoErr(t, cc.UpdateVars(ctx, VarsUpdate{Device: d.UUID, Kind: KindEnv, Set: map[string]string{"X": "1", "Y": "2"}}))
	mustNoErr(t, cc.UpdateVars(ctx, VarsUpdate{Device: d.UUID, Kind: KindEnv, Unset: []string{"Y"}}))
	mustNoErr(t, cc.UpdateVars(ctx, VarsUpdate{App: a.ID, Kind: KindConfig, Set: map[string]string{"B": "2"}}))
	n, err := cc.RestartDevice(ctx, d.UUID)
	mustNoErr(t, err)
	if n != 1 {
		t.Errorf("got restart counter %d, want 1", n)
	}
	st, err := cc.State(ctx, gw.UUID)
	mustNoErr(t, err)
	wantDev := cloudapi.DependentDevice{Name: d.Name, Restart: 1, Apps: map[string]cloudapi.DeviceAppTarget{
		fmt.Sprint(a.ID): {Config: map[string]string{"A": "1", "B": "2"}, Environment: map[string]string{"X": "1"}}}}
	if got := st.Dependent.Devices[d.UUID]; !reflect.DeepEqual(got, wantDev) {
		t.Errorf("got device target %+v, want %+v", got, wantDev)
	}
	if got := st.Dependent.Apps[fmt.Sprint(a.ID)]; got.Commit != rel.Commit || got.Image != rel.Image || got.ReleaseID != rel.ID {
		t.Errorf("got app target %+v, want release %+v", got, rel)
	}

	// Provision through the protocol, then read it back through control.
	r := c.call(t, "POST", cloudapi.PathDevices, gw.APIKey, provisionBody(a.ID, gw.DeviceID, hexOf('7')))
	if r.status != 201 {
		t.Fatalf("provision: got %d (%s)", r.status, r.body)
	}
	c.call(t, "POST", logsPath(gw.UUID), gw.APIKey, strings.NewReader(logLine(hexOf('7'), "hello", 9)))
	logs, err := cc.Logs(ctx, hexOf('7'))
	mustNoErr(t, err)
	if len(logs) != 1 || logs[0].Message != "hello" {
		t.Errorf("got logs %+v, want one \"hello\"", logs)
	}
	devs, err := cc.Devices(ctx, DeviceFilter{Gateway: gw.UUID})
	mustNoErr(t, err)
	if len(devs) != 2 {
		t.Errorf("got %d devices of the gateway, want 2", len(devs))
	}
	reqs, err := cc.Requests(ctx, 0)
	mustNoErr(t, err)
	if len(reqs) != 2 || reqs[0].Route != RouteProvision || reqs[0].Status != 201 || reqs[0].Gateway != gw.UUID || reqs[1].Route != RouteLogs {
		t.Errorf("got journal %+v, want provision 201 then logs", reqs)
	}
	if later, _ := cc.Requests(ctx, reqs[0].Seq); len(later) != 1 {
		t.Errorf("requests after %d: got %d, want 1", reqs[0].Seq, len(later))
	}

	// Move to an app of another gateway app: it leaves the first state.
	gw2, err := cc.CreateGateway(ctx, GatewaySpec{})
	mustNoErr(t, err)
	a2, err := cc.CreateApp(ctx, AppSpec{Gateway: gw2.UUID})
	mustNoErr(t, err)
	mustNoErr(t, cc.MoveDevice(ctx, d.UUID, a2.ID, ""))
	st1, _ := cc.State(ctx, gw.UUID)
	st2, _ := cc.State(ctx, gw2.UUID)
	if _, ok := st1.Dependent.Devices[d.UUID]; ok {
		t.Errorf("moved device still in the old gateway's state")
	}
	if got, ok := st2.Dependent.Devices[d.UUID]; !ok || got.Apps[fmt.Sprint(a2.ID)].Environment["X"] != "1" {
		t.Errorf("moved device in the new gateway's state: got %+v (present %v), want it with its own env", got, ok)
	}

	mustNoErr(t, cc.DeleteDevice(ctx, d.UUID))
	if _, err := cc.Device(ctx, d.UUID); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted device: got %v, want not found", err)
	}
	mustNoErr(t, cc.DeleteApp(ctx, a.ID))
	if _, err := cc.Device(ctx, hexOf('7')); !errors.Is(err, ErrNotFound) {
		t.Errorf("device of a deleted app: got %v, want not found", err)
	}
	st1, _ = cc.State(ctx, gw.UUID)
	if len(st1.Dependent.Apps) != 0 || len(st1.Dependent.Devices) != 0 {
		t.Errorf("after app removal got state %+v, want empty", st1.Dependent)
	}
	info, err := cc.Info(ctx)
	mustNoErr(t, err)
	if info.Seed != 42 || info.Gateways != 3 || info.Devices != 0 {
		t.Errorf("got info %+v, want seed 42, 3 gateways, 0 devices", info)
	}
}

func TestControlAPIRefusesBadInputWithoutChangingAnything(t *testing.T) {
	c := newTestCloud(t, Options{})
	cc := c.client()
	ctx := testCtx(t)
	f := c.fixture(t)
	d, err := c.CreateDevice(DeviceSpec{AppID: f.app.ID, Environment: map[string]string{"KEEP": "1"}})
	mustNoErr(t, err)
	second, err := c.CreateGateway(GatewaySpec{AppID: f.gw.AppID})
	mustNoErr(t, err)
	_ = second
	foreign := c.fixture(t)
	stateBefore, etagBefore, err := c.State(f.gw.UUID)
	mustNoErr(t, err)
	countBefore := c.Info()

	tests := []struct {
		name string
		call func() error
		want error
		msg  string
	}{
		{"a gateway with a bad uuid", func() error { _, err := cc.CreateGateway(ctx, GatewaySpec{UUID: "XYZ"}); return err }, ErrInvalid, "uuid"},
		{"a gateway with a taken uuid", func() error { _, err := cc.CreateGateway(ctx, GatewaySpec{UUID: f.gw.UUID}); return err }, ErrConflict, "taken"},
		{"a gateway with a taken key", func() error { _, err := cc.CreateGateway(ctx, GatewaySpec{APIKey: f.gw.APIKey}); return err }, ErrConflict, "key"},
		{"a gateway with a taken device id", func() error { _, err := cc.CreateGateway(ctx, GatewaySpec{DeviceID: d.ID}); return err }, ErrConflict, "device id"},
		{"a gateway in an unknown app", func() error { _, err := cc.CreateGateway(ctx, GatewaySpec{AppID: 999}); return err }, ErrNotFound, "999"},
		{"an app without parent", func() error { _, err := cc.CreateApp(ctx, AppSpec{Name: "x"}); return err }, ErrInvalid, "parentApp or gateway"},
		{"an app with a bad variable name", func() error {
			_, err := cc.CreateApp(ctx, AppSpec{Gateway: f.gw.UUID, Config: map[string]string{"OK": "1", "1BAD": "x"}})
			return err
		}, ErrInvalid, "1BAD"},
		{"vars with one bad name among good ones", func() error {
			return cc.UpdateVars(ctx, VarsUpdate{Device: d.UUID, Kind: KindEnv, Set: map[string]string{"GOOD": "1", "bad-name": "2"}})
		}, ErrInvalid, "bad-name"},
		{"vars both set and unset", func() error {
			return cc.UpdateVars(ctx, VarsUpdate{Device: d.UUID, Kind: KindEnv, Set: map[string]string{"A": "1"}, Unset: []string{"A"}})
		}, ErrInvalid, "both"},
		{"vars of an unknown kind", func() error {
			return cc.UpdateVars(ctx, VarsUpdate{Device: d.UUID, Kind: "labels", Set: map[string]string{"A": "1"}})
		}, ErrInvalid, "kind"},
		{"vars of an unknown device", func() error {
			return cc.UpdateVars(ctx, VarsUpdate{Device: hexOf('e'), Kind: KindEnv, Set: map[string]string{"A": "1"}})
		}, ErrNotFound, hexOf('e')},
		{"a device in an unknown app", func() error { _, err := cc.CreateDevice(ctx, DeviceSpec{AppID: 999}); return err }, ErrNotFound, "999"},
		{"a device whose app has two gateways and none named", func() error { _, err := cc.CreateDevice(ctx, DeviceSpec{AppID: f.app.ID}); return err }, ErrInvalid, "2 gateways"},
		{"a device managed by a gateway of another app", func() error {
			_, err := cc.CreateDevice(ctx, DeviceSpec{AppID: f.app.ID, Gateway: foreign.gw.UUID})
			return err
		}, ErrInvalid, "belongs to app"},
		{"a device with a bad uuid", func() error {
			_, err := cc.CreateDevice(ctx, DeviceSpec{AppID: f.app.ID, Gateway: f.gw.UUID, UUID: "short"})
			return err
		}, ErrInvalid, "uuid"},
		{"a device with a taken uuid", func() error {
			_, err := cc.CreateDevice(ctx, DeviceSpec{AppID: f.app.ID, Gateway: f.gw.UUID, UUID: d.UUID})
			return err
		}, ErrConflict, "taken"},
		{"a release with neither layers nor image", func() error { _, err := cc.PushRelease(ctx, f.app.ID, ReleaseSpec{}); return err }, ErrInvalid, "layers"},
		{"a release with an image by tag", func() error {
			_, err := cc.PushRelease(ctx, f.app.ID, ReleaseSpec{Image: "127.0.0.1:5000/x:latest"})
			return err
		}, ErrInvalid, "digest"},
		{"a release with a short commit", func() error {
			_, err := cc.PushRelease(ctx, f.app.ID, ReleaseSpec{Image: fakeImage("x", 'a'), Commit: "abc"})
			return err
		}, ErrInvalid, "commit"},
		{"a release with a path escaping the image", func() error {
			_, err := cc.PushRelease(ctx, f.app.ID, ReleaseSpec{Layers: []Layer{{Files: map[string][]byte{"../etc/passwd": nil}}}})
			return err
		}, ErrInvalid, "../etc/passwd"},
		{"a release of an unknown app", func() error { _, err := cc.PushRelease(ctx, 999, ReleaseSpec{Image: fakeImage("x", 'a')}); return err }, ErrNotFound, "999"},
		{"a move to an unknown app", func() error { return cc.MoveDevice(ctx, d.UUID, 999, "") }, ErrNotFound, "999"},
		{"a move of an unknown device", func() error { return cc.MoveDevice(ctx, hexOf('e'), f.app.ID, "") }, ErrNotFound, "device"},
		{"a restart of an unknown device", func() error { _, err := cc.RestartDevice(ctx, hexOf('e')); return err }, ErrNotFound, "device"},
		{"a delete of an unknown device", func() error { return cc.DeleteDevice(ctx, hexOf('e')) }, ErrNotFound, "device"},
		{"a delete of an unknown app", func() error { return cc.DeleteApp(ctx, 999) }, ErrNotFound, "999"},
		{"a delay on an unknown route", func() error { return cc.Delay(ctx, "status", 1, 0) }, ErrInvalid, "route"},
		{"a fail-next with a 200 status", func() error { return cc.FailNext(ctx, RouteState, 1, 200) }, ErrInvalid, "status"},
		{"an outage of an unknown mode", func() error { return cc.Outage(ctx, "flaky") }, ErrInvalid, "mode"},
		{"a hang of an unknown route", func() error { return cc.Hang(ctx, "") }, ErrInvalid, "route"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var ce *ControlError
			if errors.As(err, &ce) && !strings.Contains(ce.Message, tt.msg) {
				t.Errorf("got message %q, want it to mention %q", ce.Message, tt.msg)
			}
		})
	}
	stateAfter, etagAfter, _ := c.State(f.gw.UUID)
	if etagAfter != etagBefore || string(stateAfter) != string(stateBefore) {
		t.Errorf("refused input changed the state:\nbefore %s\nafter  %s", stateBefore, stateAfter)
	}
	if after := c.Info(); after.Gateways != countBefore.Gateways || after.Apps != countBefore.Apps || after.Devices != countBefore.Devices {
		t.Errorf("refused input changed the counts: before %+v, after %+v", countBefore, after)
	}
	if fs := c.Faults(); len(fs.Delays)+len(fs.FailNext)+len(fs.Hangs) != 0 || fs.Outage != "" {
		t.Errorf("refused fault input left knobs: %+v", fs)
	}
	got, _ := c.Device(d.UUID)
	if !reflect.DeepEqual(got.Environment, map[string]string{"KEEP": "1"}) {
		t.Errorf("got env %v, want only KEEP", got.Environment)
	}
}

func TestControlHTTPNeedsTheAdminTokenAndStrictJSON(t *testing.T) {
	c := newTestCloud(t, Options{AdminToken: "secret"})
	for _, h := range []string{"", "Bearer wrong", "Basic secret"} {
		req, _ := http.NewRequest("GET", c.url+ControlPrefix+"info", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		resp, err := http.DefaultClient.Do(req)
		mustNoErr(t, err)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("Authorization %q: got %d, want 401", h, resp.StatusCode)
		}
	}
	post := func(path, body string) (int, string) {
		req := testkit.NewRequest(t, "POST", c.url+ControlPrefix+path, strings.NewReader(body), "Authorization", "Bearer secret")
		resp, b := testkit.Do(t, nil, req)
		return resp.StatusCode, string(b)
	}
	for _, tt := range []struct{ name, path, body, msg string }{
		{"an unknown field", "gateways", `{"uuidd":"x"}`, "unknown field"},
		{"malformed JSON", "gateways", `{`, "malformed"},
		{"an empty body", "apps", ``, "required"},
		{"trailing data", "gateways", `{} {}`, "after"},
		{"a bad delay", "faults/delay", `{"route":"state","delay":"soon"}`, "duration"},
	} {
		t.Run(tt.name+" answers 400", func(t *testing.T) {
			code, body := post(tt.path, tt.body)
			if code != 400 || !strings.Contains(body, tt.msg) {
				t.Errorf("got %d %q, want 400 mentioning %q", code, body, tt.msg)
			}
		})
	}
	if code, _ := post("nowhere", `{}`); code != 404 {
		t.Errorf("unknown control route: got %d, want 404", code)
	}
	if got := c.Info(); got.Gateways != 0 {
		t.Errorf("refused requests created %d gateways", got.Gateways)
	}
}

// recordingBuilder is an ImageBuilder that records what it builds.
type recordingBuilder struct {
	mu     sync.Mutex
	repos  []string
	layers [][]Layer
	err    error
}

func (b *recordingBuilder) BuildImage(ctx context.Context, repo string, layers []Layer) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return "", b.err
	}
	b.repos = append(b.repos, repo)
	b.layers = append(b.layers, layers)
	return fakeImage(repo, byte('a'+len(b.repos))), nil
}

func TestPushReleaseBuildsTheImageFromLayers(t *testing.T) {
	b := &recordingBuilder{}
	c := newTestCloud(t, Options{Builder: b})
	f := c.fixture(t)
	cc := c.client()
	ctx := testCtx(t)

	t.Run("layers are built into the release image", func(t *testing.T) {
		layers := []Layer{{Files: map[string][]byte{"assets/fw.bin": []byte("v1"), "assets/old.txt": []byte("x")}}, {Delete: []string{"assets/old.txt"}}}
		rel, err := cc.PushRelease(ctx, f.app.ID, ReleaseSpec{Layers: layers})
		mustNoErr(t, err)
		if !commitRe.MatchString(rel.Commit) || rel.Image != fakeImage(fmt.Sprintf("apps/%d", f.app.ID), 'b') {
			t.Errorf("got release %+v, want a 40-hex commit and the built image", rel)
		}
		if !reflect.DeepEqual(b.layers[0], layers) {
			t.Errorf("builder got layers %+v, want %+v", b.layers[0], layers)
		}
	})
	t.Run("the simple files form is one layer", func(t *testing.T) {
		body := `{"files":{"assets/a.txt":"` + "aGk=" + `"}}`
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s%sapps/%d/releases", c.url, ControlPrefix, f.app.ID), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+c.AdminToken())
		resp, err := http.DefaultClient.Do(req)
		mustNoErr(t, err)
		defer resp.Body.Close()
		var rel Release
		mustNoErr(t, json.NewDecoder(resp.Body).Decode(&rel))
		if resp.StatusCode != 201 {
			t.Fatalf("got %d, want 201", resp.StatusCode)
		}
		want := []Layer{{Files: map[string][]byte{"assets/a.txt": []byte("hi")}}}
		if !reflect.DeepEqual(b.layers[1], want) {
			t.Errorf("builder got %+v, want %+v", b.layers[1], want)
		}
		app, _ := c.App(f.app.ID)
		if app.Release == nil || app.Release.ID != rel.ID {
			t.Errorf("got latest release %+v, want %+v", app.Release, rel)
		}
	})
	t.Run("a failing build leaves the latest release alone", func(t *testing.T) {
		before, _ := c.App(f.app.ID)
		b.mu.Lock()
		b.err = errors.New("registry down")
		b.mu.Unlock()
		_, err := c.PushRelease(ctx, f.app.ID, ReleaseSpec{Layers: []Layer{{Files: map[string][]byte{"assets/x": nil}}}})
		if err == nil || !strings.Contains(err.Error(), "registry down") {
			t.Fatalf("got %v, want the builder's error", err)
		}
		after, _ := c.App(f.app.ID)
		if !reflect.DeepEqual(before.Release, after.Release) {
			t.Errorf("release changed from %+v to %+v", before.Release, after.Release)
		}
	})
	t.Run("a duplicate commit conflicts", func(t *testing.T) {
		rels, _ := c.Releases(f.app.ID)
		_, err := c.PushRelease(ctx, f.app.ID, ReleaseSpec{Image: fakeImage("x", 'c'), Commit: rels[0].Commit})
		if !errors.Is(err, ErrConflict) {
			t.Errorf("got %v, want ErrConflict", err)
		}
	})
	t.Run("without a builder layers are refused", func(t *testing.T) {
		c2 := newTestCloud(t, Options{})
		f2 := c2.fixture(t)
		spec := ReleaseSpec{Layers: []Layer{{Files: map[string][]byte{"assets/x": nil}}}}
		if _, err := c2.PushRelease(ctx, f2.app.ID, spec); !errors.Is(err, ErrNoBuilder) {
			t.Errorf("got %v, want ErrNoBuilder", err)
		}
		// Over HTTP it is a 503, as an internal failure is: no sentinel.
		_, err := c2.client().PushRelease(ctx, f2.app.ID, spec)
		var ce *ControlError
		if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || errors.Unwrap(ce) != nil {
			t.Errorf("over HTTP: got %v, want a 503 ControlError that matches no sentinel", err)
		}
	})
}

func TestGatewaysAreIsolated(t *testing.T) {
	c := newTestCloud(t, Options{})
	a, b := c.fixture(t), c.fixture(t)
	da := c.device(t, a.app.ID)
	db := c.device(t, b.app.ID)
	for _, tt := range []struct {
		name      string
		self      fixture
		own, peer DeviceInfo
		peerApp   int64
	}{
		{"gateway A", a, da, db, b.app.ID},
		{"gateway B", b, db, da, a.app.ID},
	} {
		t.Run(tt.name+" sees only its own apps and devices", func(t *testing.T) {
			var st cloudapi.TargetState
			r := c.call(t, "GET", statePath(tt.self.gw.UUID), tt.self.gw.APIKey, nil)
			mustNoErr(t, json.Unmarshal([]byte(r.body), &st))
			if len(st.Dependent.Apps) != 1 || len(st.Dependent.Devices) != 1 {
				t.Fatalf("got %d apps and %d devices, want 1 and 1", len(st.Dependent.Apps), len(st.Dependent.Devices))
			}
			if _, ok := st.Dependent.Devices[tt.own.UUID]; !ok {
				t.Errorf("own device missing")
			}
			if r := c.call(t, "PATCH", fmt.Sprintf(cloudapi.PathDeviceFmt, tt.peer.ID), tt.self.gw.APIKey, strings.NewReader(`{"status":"x"}`)); r.status != 404 {
				t.Errorf("PATCH of the peer's device: got %d, want 404", r.status)
			}
			if r := c.call(t, "POST", cloudapi.PathDevices, tt.self.gw.APIKey, provisionBody(tt.peerApp, tt.self.gw.DeviceID, hexOf('c'))); r.status != 400 {
				t.Errorf("provisioning into the peer's app: got %d, want 400", r.status)
			}
			c.call(t, "POST", logsPath(tt.self.gw.UUID), tt.self.gw.APIKey, strings.NewReader(logLine(tt.peer.UUID, "sneaky", 1)))
			if l, _ := c.Logs(tt.peer.UUID); len(l) != 0 {
				t.Errorf("peer device got %d log lines from another gateway, want 0", len(l))
			}
		})
	}
}
