package e2e

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"

	"github.com/depharness/depharness/fakes/cloud"
	"github.com/depharness/depharness/fakes/registry"
	"github.com/depharness/depharness/internal/testkit"
)

// registryPort is the fake registry's port inside its container.
const registryPort = "48481/tcp"

// startRegistry starts `depharness fake-registry` on nw as registryAlias,
// in memory.
func startRegistry(t testing.TB, nw *testcontainers.DockerNetwork) *service {
	t.Helper()
	return startService(t, nw, registrySpec(""))
}

// registrySpec is the fake registry's container; with a volume, it keeps
// its blobs and manifests there (--dir /data).
func registrySpec(volume string) serviceSpec {
	cmd := []string{"fake-registry", "--listen", "0.0.0.0:48481"}
	if volume != "" {
		cmd = append(cmd, "--dir", "/data/registry")
	}
	return serviceSpec{
		Alias:     registryAlias,
		Cmd:       cmd,
		Ports:     []string{registryPort},
		HealthURL: "http://127.0.0.1:48481/v2/",
		Volume:    volume,
	}
}

// hostRef rewrites an image reference handed out inside the network
// ("registry.localhost:48481/apps/1@sha256:…") to the same repository and digest on
// the registry's published loopback port, which the Docker daemon reaches
// (and treats as an insecure registry, being in 127.0.0.0/8).
func hostRef(t testing.TB, reg *service, ref string) string {
	t.Helper()
	_, rest, ok := strings.Cut(ref, "/")
	if !ok {
		t.Fatalf("image reference %q has no repository", ref)
	}
	return strings.TrimPrefix(reg.URL(t, registryPort), "http://") + "/" + rest
}

// pullImage makes the Docker daemon pull ref and removes the image at the
// end of t.
func pullImage(t testing.TB, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := docker.ImagePull(ctx, ref, client.ImagePullOptions{})
	if err != nil {
		t.Fatalf("docker pull %s: %v", ref, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := docker.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Errorf("remove image %s: %v", ref, err)
		}
	})
	if err := resp.Wait(ctx); err != nil {
		t.Fatalf("docker pull %s: %v", ref, err)
	}
}

// imageAssets returns the files under /assets of a pulled image, read back
// from the daemon through a created (never started) container.
func imageAssets(t testing.TB, ref string) map[string][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	created, err := docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{Image: ref, Cmd: []string{"/never-started"}},
	})
	if err != nil {
		t.Fatalf("create a container of %s: %v", ref, err)
	}
	defer func() {
		if _, err := docker.ContainerRemove(context.Background(), created.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("remove container: %v", err)
		}
	}()
	cp, err := docker.CopyFromContainer(ctx, created.ID, client.CopyFromContainerOptions{SourcePath: "/assets"})
	if err != nil {
		t.Fatalf("copy /assets out of %s: %v", ref, err)
	}
	defer cp.Content.Close()
	files := map[string][]byte{}
	for name, b := range testkit.TarFiles(t, cp.Content) {
		// Members are "assets/<path>".
		files[strings.TrimPrefix(name, "assets/")] = b
	}
	return files
}

// TestDockerDaemonPullsAnImagePushedToTheFakeRegistry proves the fake
// registry is a real OCI registry: an image of two layers (the second
// replacing one file and deleting another) is pushed from the host to the
// registry container, and the Docker daemon pulls it by digest and applies
// both layers.
func TestDockerDaemonPullsAnImagePushedToTheFakeRegistry(t *testing.T) {
	requireDocker(t)
	nw := newNetwork(t)
	reg := startRegistry(t, nw)
	host := strings.TrimPrefix(reg.URL(t, registryPort), "http://")

	layers := []registry.Layer{
		{Files: map[string][]byte{
			"firmware.bin": bytes.Repeat([]byte("v1"), 4096),
			"old.hex":      []byte(":00000001FF\n"),
			".hidden":      []byte("dotfile"),
		}},
		{Files: map[string][]byte{
			"firmware.bin": bytes.Repeat([]byte("v2"), 8192),
			"sub/x.hex":    []byte(":10010000\n"),
		}, Delete: []string{"old.hex"}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ref, digest, err := registry.NewBuilder(registry.BuilderOptions{Registry: host}).Build(ctx, "apps/e2e-pull", layers...)
	if err != nil {
		t.Fatalf("push to the registry container: %v", err)
	}
	t.Logf("pushed %s", ref)

	pullImage(t, ref)
	inspect, err := docker.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	if !slices.ContainsFunc(inspect.RepoDigests, func(d string) bool { return strings.HasSuffix(d, "@"+digest.String()) }) {
		t.Errorf("repo digests: got %v, want one ending in @%s", inspect.RepoDigests, digest)
	}
	if got := len(inspect.RootFS.Layers); got != 2 {
		t.Errorf("layers of the pulled image: got %d, want 2", got)
	}

	got := imageAssets(t, ref)
	want := registry.Flatten(layers...)
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Errorf("/assets of the pulled image: got files %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	if _, ok := got["old.hex"]; ok {
		t.Errorf("old.hex deleted by the second layer is still in the pulled image")
	}
	if !bytes.Equal(got["firmware.bin"], layers[1].Files["firmware.bin"]) {
		t.Errorf("firmware.bin: got the lower layer's version, want the upper layer's")
	}
}

// TestDockerDaemonPullsAReleaseTheFakeCloudPushed pushes a release through
// the fake cloud's control API: the cloud container builds the image and
// pushes it to the registry container over the network, and hands out a
// reference with the registry's network name. The same repository and
// digest, on the registry's published loopback port, is what the Docker
// daemon pulls.
func TestDockerDaemonPullsAReleaseTheFakeCloudPushed(t *testing.T) {
	requireDocker(t)
	nw := newNetwork(t)
	reg := startRegistry(t, nw)
	cl := startCloud(t, nw)
	ctl := &cloud.ControlClient{BaseURL: cl.URL(t, cloudPort), Token: adminToken}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gw, err := ctl.CreateGateway(ctx, cloud.GatewaySpec{})
	if err != nil {
		t.Fatal(err)
	}
	app, err := ctl.CreateApp(ctx, cloud.AppSpec{Gateway: gw.UUID})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"assets/firmware.bin": bytes.Repeat([]byte{0xA5, 0x5A}, 1<<14), "assets/sub/x.hex": []byte(":00000001FF\n")}
	rel, err := ctl.PushRelease(ctx, app.ID, cloud.ReleaseSpec{Layers: []cloud.Layer{{Files: files}}})
	if err != nil {
		t.Fatalf("push a release: %v", err)
	}
	if !strings.HasPrefix(rel.Image, registryHost+"/") {
		t.Fatalf("release image: got %s, want a reference on %s", rel.Image, registryHost)
	}
	ref := hostRef(t, reg, rel.Image)
	pullImage(t, ref)
	got := imageAssets(t, ref)
	if len(got) != 2 || !bytes.Equal(got["firmware.bin"], files["assets/firmware.bin"]) || !bytes.Equal(got["sub/x.hex"], files["assets/sub/x.hex"]) {
		t.Errorf("/assets of the pulled release: got files %v, want firmware.bin and sub/x.hex as pushed", slices.Sorted(maps.Keys(got)))
	}
}
