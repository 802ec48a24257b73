package world

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// awaitConverged polls until every one of want devices reports its app's
// latest release to the cloud, or fails the test at ctx's deadline.
func awaitConverged(ctx context.Context, t *testing.T, st *Stack, want int) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		conv, total := st.Convergence(st.Identity.UUID)
		if total == want && conv == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("converged %d of %d devices (want %d) before the deadline", conv, total, want)
		case <-tick.C:
		}
	}
}

func TestStackRollsOutEveryReleaseToEveryDevice(t *testing.T) {
	for _, pol := range []gateway.Policy{gateway.PolicyAck, gateway.PolicyAccepted} {
		t.Run("gateway answers "+string(pol), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			const n = 12
			st, err := StartStack(ctx, StackOptions{
				Proxy:   ProxyOptions{DataDir: t.TempDir(), PollInterval: 100 * time.Millisecond, HookRetryInterval: 200 * time.Millisecond},
				Policy:  pol,
				Profile: fleet.Profile{Count: n, Seed: 7},
				Demo:    true,
				Logger:  testkit.Logger(t, slog.LevelWarn),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := st.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}()
			awaitConverged(ctx, t, st, n)

			app := st.Apps[0]
			rel, err := st.Cloud.PushRelease(ctx, app.App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{"assets/firmware.bin": []byte("v2")}}}})
			if err != nil {
				t.Fatal(err)
			}
			awaitConverged(ctx, t, st, n)
			for _, d := range st.Cloud.Devices(cloud.DeviceFilter{AppID: app.App.ID}) {
				if d.IsOnCommit == nil || *d.IsOnCommit != rel.Commit {
					t.Errorf("device %s is on %v, want the new release %s", d.UUID, d.IsOnCommit, rel.Commit)
				}
			}
			// The gateway records a report once its PUT is answered, which
			// may be a moment after the cloud heard of it.
			for s := st.Gateway.Stats(); s.Converged != n || s.States[fleet.StateFailed] != 0; s = st.Gateway.Stats() {
				if s.States[fleet.StateFailed] != 0 || ctx.Err() != nil {
					t.Fatalf("gateway stats = %+v, want %d converged and none failed", s, n)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// A stack started on the data of a stopped one resumes its world: the same
// gateway identity and apps (nothing seeded again), every device adopted
// (none provisioned), the old releases still served from the registry's
// disk, and a new release rolled out.
func TestAStackResumesTheWorldOfItsDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	const n = 4
	opts := StackOptions{
		Fakes:   FakesOptions{CloudStateFile: filepath.Join(dir, "cloud.json"), RegistryDir: filepath.Join(dir, "registry")},
		Proxy:   ProxyOptions{DataDir: filepath.Join(dir, "proxy"), PollInterval: 100 * time.Millisecond, HookRetryInterval: 200 * time.Millisecond},
		Profile: fleet.Profile{Count: n, Seed: 7},
		Demo:    true,
		Logger:  testkit.Logger(t, slog.LevelWarn),
	}
	first, err := StartStack(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	awaitConverged(ctx, t, first, n)
	before := first.Cloud.Devices(cloud.DeviceFilter{Gateway: first.Identity.UUID})
	identity, apps := first.Identity, first.Apps
	if first.Resumed {
		t.Error("a stack on an empty data dir says it resumed")
	}
	if err := first.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Release images name the registry's address: it must be the same.
	opts.Fakes.RegistryListen = first.RegistryAddr
	second, err := StartStack(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	id := second.Identity
	if !second.Resumed || id.UUID != identity.UUID || id.APIKey != identity.APIKey || id.DeviceID != identity.DeviceID || len(second.Apps) != len(apps) {
		t.Fatalf("resumed %v as %+v with %d apps; want %+v with %d apps", second.Resumed, second.Identity, len(second.Apps), identity, len(apps))
	}
	awaitConverged(ctx, t, second, n)
	after := second.Cloud.Devices(cloud.DeviceFilter{Gateway: identity.UUID})
	if len(after) != len(before) {
		t.Errorf("devices after resuming: got %d, want the %d of before", len(after), len(before))
	}
	// The cloud still shows the devices converged from before: wait for the
	// gateway app to have taken them over.
	m := second.Gateway.Metrics()
	for testutil.ToFloat64(m.Adopted)+testutil.ToFloat64(m.Provisioned) < n && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	if a, p := testutil.ToFloat64(m.Adopted), testutil.ToFloat64(m.Provisioned); a != n || p != 0 {
		t.Errorf("resumed gateway adopted %v and provisioned %v devices; want %d and 0", a, p, n)
	}
	rel, err := second.Cloud.PushRelease(ctx, apps[0].App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{"assets/firmware.bin": []byte("v3")}}}})
	if err != nil {
		t.Fatal(err)
	}
	awaitConverged(ctx, t, second, n)
	for _, d := range second.Cloud.Devices(cloud.DeviceFilter{AppID: apps[0].App.ID}) {
		if d.IsOnCommit == nil || *d.IsOnCommit != rel.Commit {
			t.Errorf("device %s is on %v, want the new release %s", d.UUID, d.IsOnCommit, rel.Commit)
		}
	}
}
