package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	cloudapi "github.com/depharness/depharness/api/cloud"
	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/internal/testkit"
	"github.com/depharness/depharness/sim/fleet"
	"github.com/depharness/depharness/sim/gateway"
	"github.com/depharness/depharness/world"
)

// These tests run the gateway against the reference proxy, started
// in-process with the fake cloud and registry by package world; the
// gateway speaks to it over HTTP only, as to any supervisor.

func startStack(t *testing.T, pol gateway.Policy, n int) (*world.Stack, context.Context) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	st, err := world.StartStack(ctx, world.StackOptions{
		Proxy:   world.ProxyOptions{DataDir: t.TempDir(), PollInterval: 50 * time.Millisecond, HookRetryInterval: 100 * time.Millisecond},
		Policy:  pol,
		Profile: fleet.Profile{Count: n, Seed: 11, FlashTime: fleet.Dist{Dist: "uniform", Max: fleet.Duration(20 * time.Millisecond)}},
		Demo:    true,
	})
	if err != nil {
		t.Fatalf("starting the world: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("closing the world: %v", err)
		}
	})
	testkit.Eventually(t, "every device converged", func() bool { return st.Gateway.Stats().Converged == n })
	return st, ctx
}

func TestWithTheReferenceProxy(t *testing.T) {
	for _, pol := range []gateway.Policy{gateway.PolicyAck, gateway.PolicyAccepted} {
		t.Run("policy "+string(pol), func(t *testing.T) {
			const n = 6
			st, ctx := startStack(t, pol, n)

			t.Run("each release is downloaded once and reaches the cloud", func(t *testing.T) {
				if got := counter(t, st.Gateway.Metrics().AssetDownloads); got != float64(len(st.Apps)) {
					t.Errorf("got %v asset downloads, want one per demo app (%d)", got, len(st.Apps))
				}
				for _, bad := range []string{"checksum_mismatch", "bad_firmware"} {
					if got := counter(t, st.Gateway.Metrics().Flashes.WithLabelValues(bad)); got != 0 {
						t.Errorf("got %v flashes with result %s, want 0 (the demo releases' checksums match)", got, bad)
					}
				}
				// The proxy forwards the reports to the cloud on its own time.
				testkit.Await(ctx, t, "every device on its release in the cloud", func() bool {
					conv, total := st.Convergence(st.Identity.UUID)
					return conv == n && total == n
				})
			})

			uuids := st.Gateway.UUIDs()
			t.Run("a restart in the cloud reboots the device and its log line reaches the cloud", func(t *testing.T) {
				uuid := uuids[0]
				if _, err := st.Cloud.RestartDevice(uuid); err != nil {
					t.Fatal(err)
				}
				testkit.Await(ctx, t, "the restart's log line in the cloud", func() bool {
					lines, err := st.Cloud.Logs(uuid)
					return err == nil && hasLine(lines, "Device restarted", true)
				})
			})

			t.Run("a device deleted in the cloud is forgotten by the gateway and the proxy", func(t *testing.T) {
				uuid := uuids[1]
				if err := st.Cloud.DeleteDevice(uuid); err != nil {
					t.Fatal(err)
				}
				testkit.Eventually(t, "the gateway forgot the device", func() bool {
					_, ok := st.Gateway.Device(uuid)
					return !ok
				})
				testkit.Eventually(t, "the delete hook was acknowledged", func() bool {
					return counter(t, st.Gateway.Metrics().HooksReceived.WithLabelValues("delete", "200")) >= 1
				})
				if got := st.Gateway.Stats().Managed; got != n-1 {
					t.Errorf("got %d managed devices, want %d", got, n-1)
				}
			})

			t.Run("a new release is flashed onto every device of its app", func(t *testing.T) {
				app := st.Apps[0]
				rel, err := st.Cloud.PushRelease(ctx, app.App.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{"assets/firmware.bin": []byte("v2")}}}})
				if err != nil {
					t.Fatal(err)
				}
				testkit.Await(ctx, t, "the app's devices on the new release", func() bool {
					ds := st.Cloud.Devices(cloud.DeviceFilter{AppID: app.App.ID})
					for _, d := range ds {
						if d.IsOnCommit == nil || *d.IsOnCommit != rel.Commit || d.Status != gateway.StatusIdle {
							return false
						}
					}
					return len(ds) > 0
				})
			})
		})
	}
}

func hasLine(lines []cloudapi.LogLine, msg string, system bool) bool {
	for _, l := range lines {
		if strings.Contains(l.Message, msg) && l.IsSystem == system {
			return true
		}
	}
	return false
}
