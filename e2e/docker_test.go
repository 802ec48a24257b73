package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// loopback is the host address containers' ports are published on.
var loopback = netip.MustParseAddr("127.0.0.1")

// builtImagePrefix begins the tag these tests give an image they build
// themselves from the working tree when DEPHARNESS_IMAGE is not set; a
// random suffix keeps concurrent runs apart, and the tag is removed at exit.
const builtImagePrefix = "depharness:e2e-"

var (
	// dockerErr is why no Docker engine is reachable; nil when one is.
	dockerErr error
	// imageName is the depharness image the tests run; imageErr is why it
	// could not be found or built.
	imageName string
	imageErr  error
	// imageBuilt is set when imageName was built by this run.
	imageBuilt bool
	// docker is a client of the engine for what testcontainers does not
	// offer (kill with a signal, network disconnect, image pull).
	docker *testcontainers.DockerClient
)

func TestMain(m *testing.M) {
	flag.Parse()
	// The tests remove what they create; Ryuk (a reaper container pulled
	// from a hub) is neither needed nor available offline.
	setDefaultEnv("TESTCONTAINERS_RYUK_DISABLED", "true")
	// Published ports are reached on loopback only.
	setDefaultEnv("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	dockerErr = connectDocker(ctx)
	if dockerErr == nil {
		imageName, imageErr = ensureImage(ctx)
	}
	cancel()
	code := m.Run()
	if docker != nil {
		if imageBuilt {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if _, err := docker.ImageRemove(ctx, imageName, client.ImageRemoveOptions{}); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: remove image %s: %v\n", imageName, err)
			}
			cancel()
		}
		_ = docker.Close()
	}
	os.Exit(code)
}

func setDefaultEnv(k, v string) {
	if os.Getenv(k) == "" {
		_ = os.Setenv(k, v)
	}
}

// connectDocker connects to the engine and pings it.
func connectDocker(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("docker client: %v", r)
		}
	}()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{}); err != nil {
		_ = cli.Close()
		return err
	}
	docker = cli
	return nil
}

// ensureImage returns the image to run: DEPHARNESS_IMAGE, which must exist,
// or one built from the working tree with the repository's Dockerfile.
func ensureImage(ctx context.Context) (string, error) {
	if img := os.Getenv("DEPHARNESS_IMAGE"); img != "" {
		if _, err := docker.ImageInspect(ctx, img); err != nil {
			return "", fmt.Errorf("DEPHARNESS_IMAGE=%s: %w (run `make image`)", img, err)
		}
		return img, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "depharness-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.MkdirAll(filepath.Join(dir, "bin", "image", "data"), 0o755); err != nil {
		return "", err
	}
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "bin", "depharness"), "./cmd/depharness")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/depharness: %v\n%s", err, out)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	tag := builtImagePrefix + hex.EncodeToString(b[:])
	img := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, "-f", filepath.Join(root, "Dockerfile"), dir)
	if out, err := img.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build: %v\n%s", err, out)
	}
	imageBuilt = true
	return tag, nil
}

// repoRoot is the directory of go.mod above the working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// requireDocker skips t when no Docker engine is reachable and fails it
// when the image is missing.
func requireDocker(t testing.TB) {
	t.Helper()
	if dockerErr != nil {
		t.Skipf("no Docker engine reachable: %v", dockerErr)
	}
	if imageErr != nil {
		t.Fatalf("depharness image: %v", imageErr)
	}
}

// newNetwork creates a user-defined bridge network removed at the end of t.
func newNetwork(t testing.TB) *testcontainers.DockerNetwork {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nw, err := tcnetwork.New(ctx, tcnetwork.WithLabels(map[string]string{"depharness.e2e": t.Name()}))
	testcontainers.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	return nw
}

// newVolume returns the name of a Docker volume removed at the end of t
// (after the containers that use it, which are terminated first).
func newVolume(t testing.TB, purpose string) string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "depharness-e2e-" + purpose + "-" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := docker.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true}); err != nil && !strings.Contains(err.Error(), "No such volume") && !strings.Contains(err.Error(), "no such volume") {
			t.Errorf("remove volume %s: %v", name, err)
		}
	})
	return name
}

// serviceSpec is one depharness container of a world.
type serviceSpec struct {
	// Alias is the container's name on the network ("cloud", "proxy").
	Alias string
	// Cmd is the depharness subcommand and its flags.
	Cmd []string
	// Env is the container's environment.
	Env map[string]string
	// Ports are container ports published on 127.0.0.1 ("48480/tcp").
	Ports []string
	// HealthURL is the URL, as seen inside the container, that the image's
	// `depharness healthcheck` must find 2xx before the service counts as
	// started. Empty means no healthcheck (started when running).
	HealthURL string
	// Volume, if set, is a named volume mounted at /data.
	Volume string
	// Files are copied into the container before it starts (path →
	// contents), readable by the image's unprivileged user.
	Files map[string][]byte
}

// service is a running depharness container.
type service struct {
	Alias string
	C     *testcontainers.DockerContainer
	nw    *testcontainers.DockerNetwork
}

// startService starts spec on nw and waits until it is healthy. The
// container is terminated at the end of t; if t failed, its log is printed
// first.
func startService(t testing.TB, nw *testcontainers.DockerNetwork, spec serviceSpec) *service {
	t.Helper()
	opts := []testcontainers.ContainerCustomizer{
		tcnetwork.WithNetwork([]string{spec.Alias}, nw),
		testcontainers.WithCmd(spec.Cmd...),
		testcontainers.WithEnv(spec.Env),
		testcontainers.WithLogger(tclog.TestLogger(t)),
		testcontainers.WithLabels(map[string]string{"depharness.e2e": t.Name(), "depharness.service": spec.Alias}),
	}
	if len(spec.Ports) > 0 {
		opts = append(opts,
			testcontainers.WithExposedPorts(spec.Ports...),
			// Published on loopback only, never on every interface.
			testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
				if hc.PortBindings == nil {
					hc.PortBindings = network.PortMap{}
				}
				for _, p := range spec.Ports {
					port, err := network.ParsePort(p)
					if err != nil {
						t.Fatalf("port %q: %v", p, err)
					}
					hc.PortBindings[port] = []network.PortBinding{{HostIP: loopback}}
				}
			}),
		)
	}
	for p, b := range spec.Files {
		opts = append(opts, testcontainers.WithFiles(testcontainers.ContainerFile{
			Reader: bytes.NewReader(b), ContainerFilePath: p, FileMode: 0o644,
		}))
	}
	if spec.Volume != "" {
		opts = append(opts, testcontainers.WithMounts(testcontainers.VolumeMount(spec.Volume, "/data")))
	}
	if spec.HealthURL != "" {
		opts = append(opts,
			testcontainers.WithConfigModifier(func(c *container.Config) {
				c.Healthcheck = &container.HealthConfig{
					Test:     []string{"CMD", "/depharness", "healthcheck", "--url", spec.HealthURL, "--timeout", "2s"},
					Interval: 250 * time.Millisecond,
					Timeout:  3 * time.Second,
					Retries:  240,
				}
			}),
			testcontainers.WithWaitStrategyAndDeadline(90*time.Second, wait.ForHealthCheck().WithPollInterval(100*time.Millisecond)),
		)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := testcontainers.Run(ctx, imageName, opts...)
	testcontainers.CleanupContainer(t, c, testcontainers.StopTimeout(5*time.Second))
	s := &service{Alias: spec.Alias, C: c, nw: nw}
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				s.dumpLog(t, 150)
			}
		})
	}
	if err != nil {
		t.Fatalf("start %s: %v", spec.Alias, err)
	}
	return s
}

// dumpLog prints the last n lines of the container's log.
func (s *service) dumpLog(t testing.TB, n int) {
	t.Helper()
	log, err := s.readLog()
	if err != nil {
		t.Logf("%s: log: %v", s.Alias, err)
		return
	}
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("---- last %d log lines of %s ----\n%s", len(lines), s.Alias, strings.Join(lines, "\n"))
}

// Log returns the container's whole log so far.
func (s *service) Log(t testing.TB) string {
	t.Helper()
	log, err := s.readLog()
	if err != nil {
		t.Fatalf("%s: log: %v", s.Alias, err)
	}
	return log
}

// readLog is the container's log so far: as much of it as could be read
// once the log stream is open.
func (s *service) readLog() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := s.C.Logs(ctx)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	var b bytes.Buffer
	_, _ = io.Copy(&b, rc)
	return b.String(), nil
}

// URL returns http://127.0.0.1:<published port> of a container port
// ("48484/tcp"). Published ports change when a container restarts: ask
// again after Restart.
func (s *service) URL(t testing.TB, port string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := s.C.MappedPort(ctx, port)
	if err != nil {
		t.Fatalf("%s: published port of %s: %v", s.Alias, port, err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", p.Num())
}

// Kill sends signal ("KILL", "TERM") to the container's process and waits
// until the container has exited.
func (s *service) Kill(t testing.TB, signal string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := docker.ContainerKill(ctx, s.C.GetContainerID(), client.ContainerKillOptions{Signal: signal}); err != nil {
		t.Fatalf("kill -%s %s: %v", signal, s.Alias, err)
	}
	awaitCond(t, 30*time.Second, s.Alias+" exited", func() (bool, string) {
		st, err := s.C.State(ctx)
		if err != nil {
			return false, err.Error()
		}
		return !st.Running, string(st.Status)
	})
}

// Stop stops the container (SIGTERM, then SIGKILL after timeout).
func (s *service) Stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	s.within(t, timeout+30*time.Second, "stop", func(ctx context.Context) error { return s.C.Stop(ctx, &timeout) })
}

// Start starts the stopped container again (same volume, same network
// alias) and waits until it is healthy.
func (s *service) Start(t testing.TB) {
	t.Helper()
	s.within(t, 2*time.Minute, "start again", s.C.Start)
}

// Pause freezes every process of the container (cgroup freezer): it keeps
// its state and its sockets, and answers nothing until Unpause.
func (s *service) Pause(t testing.TB) {
	t.Helper()
	s.within(t, 30*time.Second, "pause", func(ctx context.Context) error {
		_, err := docker.ContainerPause(ctx, s.C.GetContainerID(), client.ContainerPauseOptions{})
		return err
	})
	t.Cleanup(func() {
		// A paused container cannot be stopped: thaw it before cleanup.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if st, err := s.C.State(ctx); err == nil && st.Paused {
			_, _ = docker.ContainerUnpause(ctx, s.C.GetContainerID(), client.ContainerUnpauseOptions{})
		}
	})
}

// Unpause thaws a paused container.
func (s *service) Unpause(t testing.TB) {
	t.Helper()
	s.within(t, 30*time.Second, "unpause", func(ctx context.Context) error {
		_, err := docker.ContainerUnpause(ctx, s.C.GetContainerID(), client.ContainerUnpauseOptions{})
		return err
	})
}

// Disconnect takes the container off its network: nobody reaches it and it
// reaches nobody (its published ports too).
func (s *service) Disconnect(t testing.TB) {
	t.Helper()
	s.within(t, 30*time.Second, "disconnect", func(ctx context.Context) error {
		_, err := docker.NetworkDisconnect(ctx, s.nw.ID, client.NetworkDisconnectOptions{Container: s.C.GetContainerID(), Force: true})
		return err
	})
}

// Connect puts the container back on its network under its alias.
func (s *service) Connect(t testing.TB) {
	t.Helper()
	s.within(t, 30*time.Second, "connect", func(ctx context.Context) error {
		_, err := docker.NetworkConnect(ctx, s.nw.ID, client.NetworkConnectOptions{
			Container:      s.C.GetContainerID(),
			EndpointConfig: &network.EndpointSettings{Aliases: []string{s.Alias}},
		})
		return err
	})
}

// within runs op on the container with a deadline of d, and fails t if it
// fails ("<what> <alias>: <error>").
func (s *service) within(t testing.TB, d time.Duration, what string, op func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := op(ctx); err != nil {
		t.Fatalf("%s %s: %v", what, s.Alias, err)
	}
}

// awaitCond polls cond every 100 ms until it holds or timeout passes, then
// fails t with what cond last said.
func awaitCond(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
