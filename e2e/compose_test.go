package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/depharness/depharness/api"
	"github.com/depharness/depharness/fakes/cloud"
)

// newComposeProject returns a docker-compose project name of its own
// (apart from `make compose-up`'s "depharness" and from any other test run
// on the same engine).
func newComposeProject() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "depharness-e2e-" + hex.EncodeToString(b[:])
}

// composePorts are the host port variables of the compose files. The test
// sets each one empty, so that Docker publishes every port on a free
// loopback port of its choosing (bound at once, no window in which another
// program can take it) and the test never meets a developer's
// `make compose-up` or `make run` on the default ports; composePort reads
// the ports back.
var composePorts = []string{
	"CLOUD_HOST_PORT", "REGISTRY_HOST_PORT", "PROXY_HOST_PORT", "PROXY_METRICS_HOST_PORT",
	"GATEWAY_HOST_PORT", "GATEWAY_METRICS_HOST_PORT", "PROXY_2_HOST_PORT", "PROXY_2_METRICS_HOST_PORT",
	"GATEWAY_2_HOST_PORT", "GATEWAY_2_METRICS_HOST_PORT",
}

// composePort returns the host address ("127.0.0.1:port") that Docker
// published for a service's container port.
func composePort(t testing.TB, root, project string, files []string, ports map[string]string, service, port string) string {
	t.Helper()
	out := strings.TrimSpace(compose(t, root, project, files, ports, "port", service, port))
	host, p, err := net.SplitHostPort(out)
	if err != nil || host != "127.0.0.1" || p == "0" {
		t.Fatalf("docker-compose port %s %s: got %q, want 127.0.0.1:<port>", service, port, out)
	}
	return out
}

// compose runs docker-compose with the repository's files, the test's
// project name and ports.
func compose(t testing.TB, root, project string, files []string, ports map[string]string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := []string{"-p", project}
	for _, f := range files {
		full = append(full, "-f", filepath.Join(root, f))
	}
	cmd := exec.CommandContext(ctx, "docker-compose", append(full, args...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DEPHARNESS_IMAGE="+imageName)
	for k, v := range ports {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestComposeWorldsServeTheSeedPageExamples brings up docker-compose.yml
// with docker-compose.scale.yml (two proxy+gateway pairs, one cloud, one
// registry) as `make compose-up` does (on ports Docker picks instead of
// the defaults), checks the seed page's curl examples against the published
// proxy ports, rolls a release out to both fleets with one push, restarts
// the cloud and the registry and runs the seeds again (nothing is lost or
// added), and takes everything down with its volumes.
func TestComposeWorldsServeTheSeedPageExamples(t *testing.T) {
	requireDocker(t)
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Fatalf("docker-compose is needed (run `make deps-docker`): %v", err)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string]string{}
	for _, v := range composePorts {
		ports[v] = ""
	}
	files := []string{"docker-compose.yml", "docker-compose.scale.yml"}
	project := newComposeProject()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("---- compose logs ----\n%s", compose(t, root, project, files, ports, "logs", "--no-color", "--tail", "40"))
		}
		compose(t, root, project, files, ports, "down", "-v", "--remove-orphans", "-t", "5")
	})
	start := time.Now()
	compose(t, root, project, files, ports, "up", "-d", "--no-build")
	t.Logf("measured: docker-compose up (registry, cloud, 3 seeds, 2 proxies, 2 gateways) took %s", time.Since(start).Round(time.Millisecond))

	// The seed page's examples, with BALENA_SUPERVISOR_ADDRESS and the key
	// of the compose file.
	const key = "depharness-local-key"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	proxies := []string{
		"http://" + composePort(t, root, project, files, ports, "proxy", "48484"),
		"http://" + composePort(t, root, project, files, ports, "proxy-2", "48484"),
	}
	for _, addr := range proxies {
		var apps []api.App
		awaitCond(t, time.Minute, addr+" lists the seeded app", func() (bool, string) {
			err := getJSON(addr+"/v1/dependent-apps?apikey="+key, "", &apps)
			if err != nil {
				return false, err.Error()
			}
			return len(apps) == 1 && apps[0].ID == 2 && apps[0].Commit != "", fmt.Sprint(apps)
		})
	}
	ctl := &cloud.ControlClient{BaseURL: "http://" + composePort(t, root, project, files, ports, "cloud", "48480"), Token: "depharness-admin"}
	rel, err := ctl.PushRelease(ctx, 2, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: map[string][]byte{"assets/firmware.bin": []byte("compose release 2\n")}}}})
	if err != nil {
		t.Fatalf("push a release to the compose cloud: %v", err)
	}
	pushed := time.Now()
	for _, addr := range proxies {
		awaitCond(t, time.Minute, addr+" fleet on the new release", func() (bool, string) {
			var ds []api.Device
			if err := getJSON(addr+"/v1/devices?apikey="+key, "", &ds); err != nil {
				return false, err.Error()
			}
			on := 0
			for _, d := range ds {
				if d.Commit != nil && *d.Commit == rel.Commit {
					on++
				}
			}
			return len(ds) == 10 && on == len(ds), fmt.Sprintf("%d devices, %d on %.7s", len(ds), on, rel.Commit)
		})
	}
	t.Logf("measured: both fleets (2 × 10 devices) on the pushed release %s after the push", time.Since(pushed).Round(time.Millisecond))
	gws, err := ctl.Gateways(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(gws) != 2 || gws[0].AppID != gws[1].AppID {
		t.Errorf("gateways in the compose cloud: got %+v, want two of one gateway app", gws)
	}

	// The cloud and the registry keep their state on volumes: restarted,
	// and with every seed run again by a second `up`, the world is as it
	// was (one dependent app, on the pushed release; both gateways).
	compose(t, root, project, files, ports, "restart", "-t", "5", "cloud", "registry")
	compose(t, root, project, files, ports, "up", "-d", "--no-build")
	ctl.BaseURL = "http://" + composePort(t, root, project, files, ports, "cloud", "48480")
	awaitCond(t, time.Minute, "the restarted cloud keeps its model", func() (bool, string) {
		apps, err := ctl.Apps(ctx)
		if err != nil {
			return false, err.Error()
		}
		gws, err := ctl.Gateways(ctx)
		if err != nil {
			return false, err.Error()
		}
		ok := len(apps) == 1 && apps[0].ID == 2 && apps[0].Release != nil && apps[0].Release.Commit == rel.Commit &&
			apps[0].Devices == 20 && len(gws) == 2
		return ok, fmt.Sprintf("apps %+v, %d gateways", apps, len(gws))
	})
	// The seeds did run twice (and succeeded: `up` waits for them).
	if logs := compose(t, root, project, files, ports, "logs", "--no-color", "seed-app"); strings.Count(logs, `"sensors"`) < 2 {
		t.Errorf("seed-app ran fewer than two times:\n%s", logs)
	}
	for _, addr := range proxies {
		var apps []api.App
		awaitCond(t, time.Minute, addr+" still on the pushed release", func() (bool, string) {
			if err := getJSON(addr+"/v1/dependent-apps?apikey="+key, "", &apps); err != nil {
				return false, err.Error()
			}
			return len(apps) == 1 && apps[0].Commit == rel.Commit, fmt.Sprint(apps)
		})
	}
}
