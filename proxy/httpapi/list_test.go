package httpapi

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/proxy/store"
)

// freshList encodes the whole device list from one read of the store, as
// the list did before it kept its objects.
func freshList(t *testing.T, e *testEnv) string {
	t.Helper()
	var b strings.Builder
	b.WriteByte('[')
	first := true
	err := e.store.EachDeviceView(context.Background(), func(v *store.DeviceView) error {
		if e.h.hidden(v) {
			return nil
		}
		obj, err := e.h.appendListed(nil, v)
		if err != nil {
			return err
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.Write(obj)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b.WriteByte(']')
	return b.String()
}

// The list kept as objects, updated device by device after each kind of
// write (reports, provisioning, targets adding, changing and marking
// devices, removals, a new current commit, writes that change no device),
// always equals the list read whole from the store, over more devices than
// one segment holds, with and without marked devices hidden.
func TestTheKeptListAlwaysEqualsTheWholeList(t *testing.T) {
	for _, hide := range []bool{false, true} {
		t.Run(fmt.Sprintf("list-hides-marked=%v", hide), func(t *testing.T) {
			var mods []func(*Options)
			if hide {
				mods = append(mods, withViolations("list-hides-marked"))
			}
			e := newEnv(t, mods...)
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, 2))
			var uuids []string
			provision := func(n int) {
				for range n {
					u := fmt.Sprintf("%032x", rng.Uint64())
					if _, err := e.store.InsertProvisioned(ctx, store.NewDevice{UUID: u, AppID: 5, DeviceType: "t", CloudID: int64(len(uuids) + 1), Name: "n"}); err != nil {
						t.Fatal(err)
					}
					uuids = append(uuids, u)
				}
			}
			target := func(keep func(i int) bool, env string) {
				tg := store.Target{Apps: []store.TargetApp{{ID: 5, Name: "app5", Commit: "c5", Image: "reg/app5@sha256:00"}}}
				for i, u := range uuids {
					if keep(i) {
						tg.Devices = append(tg.Devices, store.TargetDevice{UUID: u, AppID: 5, Name: "d" + env, Environment: map[string]string{"E": env}})
					}
				}
				e.applyRaw(tg)
			}
			check := func(what string) {
				t.Helper()
				code, got := e.do("GET", "/v1/devices", "")
				if code != 200 {
					t.Fatalf("after %s: GET list %d %s", what, code, got)
				}
				if want := freshList(t, e); got != want {
					t.Fatalf("after %s: the kept list differs from the whole list (%d and %d bytes)", what, len(got), len(want))
				}
			}
			provision(600)
			check("provisioning 600 devices")
			for i := range 50 {
				u := uuids[rng.IntN(len(uuids))]
				if code, body := e.do("PUT", "/v1/devices/"+u, fmt.Sprintf(`{"status":"s%d","is_online":%v,"environment":{"K":"%d"}}`, i, i%2 == 0, i)); code != 200 {
					t.Fatalf("PUT: %d %s", code, body)
				}
				if i%10 == 0 {
					check(fmt.Sprintf("PUT %d", i))
				}
			}
			check("50 PUTs")
			target(func(i int) bool { return true }, "1")
			check("a target naming every device")
			e.setCurrent(5, "c5")
			check("a new current commit")
			target(func(i int) bool { return i%7 != 0 }, "2")
			check("a target leaving out every 7th device (marked)")
			for i := 0; i < len(uuids); i += 14 {
				if _, err := e.store.RemoveDeleted(ctx, uuids[i]); err != nil {
					t.Fatal(err)
				}
			}
			check("removing half of the marked devices")
			if _, err := e.store.AppendLog(ctx, uuids[1], []byte(`{"message":"m"}`), 0); err != nil {
				t.Fatal(err)
			}
			check("a log line")
			provision(300)
			check("provisioning 300 more")
			target(func(i int) bool { return i%3 != 0 }, "3")
			check("a target leaving out every 3rd device")
			if err := e.store.RecordHookAttempt(ctx, uuids[2], time.Now()); err != nil {
				t.Fatal(err)
			}
			if _, err := e.store.WriteHookState(ctx, []store.HookWrite{{UUID: uuids[3], RemoveDeleted: true}, {UUID: uuids[4], AckRestart: true}}); err != nil {
				t.Fatal(err)
			}
			check("hook writes")
		})
	}
}

// Each client's list read after its own PUT answered shows that PUT, while
// other clients write and list concurrently (run with -race).
func TestConcurrentClientsListTheirOwnWrites(t *testing.T) {
	e := newEnv(t)
	const clients, rounds = 8, 20
	uuids := make([]string, clients)
	for i := range uuids {
		uuids[i] = e.provision(5)
	}
	errs := make(chan string, clients*rounds)
	done := make(chan struct{})
	for c := range clients {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range rounds {
				status := fmt.Sprintf("client-%d-round-%d", c, i)
				if code, body := e.serve("PUT", "/v1/devices/"+uuids[c], `{"status":"`+status+`"}`); code != 200 {
					errs <- fmt.Sprintf("PUT: %d %s", code, body)
					return
				}
				if _, list := e.serve("GET", "/v1/devices", ""); !strings.Contains(list, `"status":"`+status+`"`) {
					errs <- fmt.Sprintf("client %d's list after round %d lacks its status: %s", c, i, list)
				}
			}
		}()
	}
	for range clients {
		<-done
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
