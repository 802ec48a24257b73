package cloud

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/prometheus/client_golang/prometheus"
)

// newScaleCloud is a fake cloud without an HTTP server, for in-process
// scale tests and benchmarks.
func newScaleCloud(tb testing.TB) *Server {
	tb.Helper()
	s, err := New(Options{Seed: 1, Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// populatedGateway creates a gateway and populates it.
func populatedGateway(tb testing.TB, s *Server, apps, n int) (Gateway, []App) {
	tb.Helper()
	gw, err := s.CreateGateway(GatewaySpec{})
	if err != nil {
		tb.Fatal(err)
	}
	return gw, populate(tb, s, gw, apps, n)
}

// populate gives gw n devices spread over apps dependent apps, each with a
// device variable, the apps with config and env.
func populate(tb testing.TB, s *Server, gw Gateway, apps, n int) []App {
	tb.Helper()
	var out []App
	for i := range apps {
		a, err := s.CreateApp(AppSpec{Gateway: gw.UUID, Config: map[string]string{"RATE": "10"}, Environment: map[string]string{"LEVEL": "info"}})
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := s.PushRelease(tb.Context(), a.ID, ReleaseSpec{Image: fakeImage("apps/x", byte('a'+i%6))}); err != nil {
			tb.Fatal(err)
		}
		out = append(out, a)
	}
	for i := range n {
		if _, err := s.CreateDevice(DeviceSpec{AppID: out[i%apps].ID, Gateway: gw.UUID, Environment: map[string]string{"SLOT": "x"}}); err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

func TestHundredThousandDevicesFitAndRenderPerGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("scale test")
	}
	s := newScaleCloud(t)
	start := time.Now()
	var gws []Gateway
	for range 10 {
		gw, _ := populatedGateway(t, s, 3, 10_000)
		gws = append(gws, gw)
	}
	t.Logf("created 100,000 devices in %v", time.Since(start))
	if got := s.Info().Devices; got != 100_000 {
		t.Fatalf("got %d devices, want 100000", got)
	}
	start = time.Now()
	body, _, err := s.State(gws[3].UUID)
	mustNoErr(t, err)
	t.Logf("rendered a 10,000-device state (%d bytes) in %v", len(body), time.Since(start))
	var st cloudapi.TargetState
	mustNoErr(t, json.Unmarshal(body, &st))
	if len(st.Dependent.Devices) != 10_000 || len(st.Dependent.Apps) != 3 {
		t.Errorf("got %d devices and %d apps, want 10000 and 3", len(st.Dependent.Devices), len(st.Dependent.Apps))
	}
	for u, d := range st.Dependent.Devices {
		if info, err := s.Device(u); err != nil || info.Gateway != gws[3].UUID {
			t.Fatalf("device %s in gateway 3's state: %v %+v", u, err, info)
		}
		for _, at := range d.Apps {
			if at.Environment["SLOT"] != "x" || at.Environment["LEVEL"] != "info" || at.Config["RATE"] != "10" {
				t.Fatalf("device %s: got target %+v, want merged variables", u, at)
			}
		}
		break
	}
}

func BenchmarkStateDocument10k(b *testing.B) {
	s := newScaleCloud(b)
	gw, apps := populatedGateway(b, s, 3, 10_000)
	dev := s.Devices(DeviceFilter{Gateway: gw.UUID})[0].UUID
	b.Run("one device changed", func(b *testing.B) {
		benchStateAfter(b, s, gw, func(int) error {
			_, err := s.RestartDevice(dev)
			return err
		})
	})
	b.Run("every device changed", func(b *testing.B) {
		benchStateAfter(b, s, gw, func(i int) error {
			// An app variable changes the target of every device of the app.
			for _, a := range apps {
				if err := s.SetAppEnv(a.ID, map[string]string{"GEN": string(rune('a' + i%26))}); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// benchStateAfter renders gw's target state after each change (called with
// 1, 2, …), and reports the document's size.
func benchStateAfter(b *testing.B, s *Server, gw Gateway, change func(i int) error) {
	var size int
	for i := 1; b.Loop(); i++ {
		if err := change(i); err != nil {
			b.Fatal(err)
		}
		body, _, err := s.State(gw.UUID)
		if err != nil {
			b.Fatal(err)
		}
		size = len(body)
	}
	b.SetBytes(int64(size))
}

func BenchmarkStateNotModified(b *testing.B) {
	s := newScaleCloud(b)
	gw, _ := populatedGateway(b, s, 3, 10_000)
	_, etag, err := s.State(gw.UUID)
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/device/v2/"+gw.UUID+"/state", nil)
	req.Header.Set("Authorization", "Bearer "+gw.APIKey)
	req.Header.Set("If-None-Match", etag)
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusNotModified {
			b.Fatalf("got %d, want 304", w.Code)
		}
	}
}

func BenchmarkStateFullBody(b *testing.B) {
	s := newScaleCloud(b)
	gw, _ := populatedGateway(b, s, 3, 10_000)
	req := httptest.NewRequest("GET", "/device/v2/"+gw.UUID+"/state", nil)
	req.Header.Set("Authorization", "Bearer "+gw.APIKey)
	for b.Loop() {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("got %d, want 200", w.Code)
		}
		_, _ = io.Copy(io.Discard, w.Body)
	}
}

// A gateway's state rendered with the devices added since the last render
// merged into its order, and the unchanged entries copied from the last
// document, is the state rendered afresh with the order sorted whole,
// through devices created, deleted, moved between two gateways and given
// variables and restarts of their own.
func TestStateOrderMergedEqualsSorted(t *testing.T) {
	s := newScaleCloud(t)
	gws := make([]Gateway, 2)
	apps := make([]App, 2)
	for i := range gws {
		var err error
		gws[i], err = s.CreateGateway(GatewaySpec{})
		mustNoErr(t, err)
		apps[i], err = s.CreateApp(AppSpec{Gateway: gws[i].UUID})
		mustNoErr(t, err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	var uuids []string
	for round := range 300 {
		for range rng.IntN(8) {
			switch op := rng.IntN(13); {
			case op < 7 || len(uuids) == 0:
				g := rng.IntN(2)
				d, err := s.CreateDevice(DeviceSpec{AppID: apps[g].ID, Gateway: gws[g].UUID})
				mustNoErr(t, err)
				uuids = append(uuids, d.UUID)
			case op < 9:
				i := rng.IntN(len(uuids))
				mustNoErr(t, s.DeleteDevice(uuids[i]))
				uuids = slices.Delete(uuids, i, i+1)
			case op < 10:
				g := rng.IntN(2)
				mustNoErr(t, s.MoveDevice(uuids[rng.IntN(len(uuids))], apps[g].ID, gws[g].UUID))
			case op < 11:
				mustNoErr(t, s.SetDeviceEnv(uuids[rng.IntN(len(uuids))], map[string]string{"K": strconv.Itoa(round)}))
			case op < 12:
				_, err := s.RestartDevice(uuids[rng.IntN(len(uuids))])
				mustNoErr(t, err)
			default:
				mustNoErr(t, s.SetAppEnv(apps[rng.IntN(2)].ID, map[string]string{"A": strconv.Itoa(round)}))
			}
		}
		for _, gw := range gws {
			got, _, err := s.State(gw.UUID)
			mustNoErr(t, err)
			s.mu.Lock()
			g := s.gateways[gw.UUID]
			g.orderValid = false
			want := renderStateLocked(g, 0) // every entry rendered afresh
			s.mu.Unlock()
			if !bytes.Equal(got, want) {
				t.Fatalf("round %d: state of gateway %s\n%s\nwant\n%s", round, gw.UUID, got, want)
			}
		}
	}
	if len(uuids) < 100 {
		t.Fatalf("%d devices at the end: the test no longer grows the gateways", len(uuids))
	}
}
